"""The figures say what a user looks for: true and predicted label on every misclassified tile."""

from __future__ import annotations

import numpy as np

from mnist_exp import plots


def tile_titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_misclassified_tiles_show_true_and_predicted_label_most_confident_first():
    images = np.random.default_rng(0).random((5, 28, 28, 1))
    y_true = np.array([0, 1, 2, 3, 4])
    probabilities = np.full((5, 10), 0.01)
    probabilities[0, 0] = 0.9  # right
    probabilities[1, 7] = 0.6  # wrong: 1 -> 7
    probabilities[2, 2] = 0.9  # right
    probabilities[3, 8] = 0.95  # wrong: 3 -> 8, more confident
    probabilities[4, 4] = 0.9  # right
    fig = plots.misclassified_grid(images, y_true, probabilities)
    assert tile_titles(fig) == ["true 3 / pred 8\np=0.95", "true 1 / pred 7\np=0.60"]
    assert "2 of 5 test images misclassified" in fig._suptitle.get_text()


def test_misclassified_grid_caps_tiles_and_says_so():
    y_true = np.zeros(40, dtype=int)
    probabilities = np.tile(np.eye(10)[3], (40, 1))
    fig = plots.misclassified_grid(np.zeros((40, 28, 28)), y_true, probabilities, max_tiles=10)
    assert len(tile_titles(fig)) == 10
    title = fig._suptitle.get_text()
    assert "40 of 40" in title and "10 most confident" in title


def test_no_mistakes_is_said_not_drawn_empty():
    fig = plots.misclassified_grid(np.zeros((3, 28, 28)), np.arange(3), np.eye(10)[:3])
    assert "No misclassified" in fig.texts[0].get_text()


def test_accuracy_curve_has_train_and_validation_per_epoch():
    fig = plots.accuracy_curve({"accuracy": [0.8, 0.9, 0.95], "val_accuracy": [0.85, 0.9, 0.93]})
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"train", "validation"}
    assert lines["validation"].get_xdata().tolist() == [1, 2, 3]
    assert lines["train"].get_ydata().tolist() == [0.8, 0.9, 0.95]


def test_sample_grid_labels_the_first_25_images():
    labels = np.arange(30) % 10
    fig = plots.sample_grid(np.zeros((30, 28, 28)), labels)
    assert tile_titles(fig) == [f"label {i % 10}" for i in range(25)]
