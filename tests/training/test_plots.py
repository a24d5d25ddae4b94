"""The figures say what a user looks for: true and predicted label on every misclassified tile."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_exp.training import plots


def tile_titles(fig) -> list[str]:
    """The titles over the tiles of an image grid, in reading order."""
    return [text.get_text() for ax in fig.axes for text in ax.texts]


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


def test_loss_curve_has_train_and_validation_loss_per_epoch():
    fig = plots.loss_curve({"loss": [0.5, 0.3], "val_loss": [0.6, 0.4], "accuracy": [0.8, 0.9]})
    (ax,) = fig.axes
    lines = {line.get_label(): line.get_ydata().tolist() for line in ax.get_lines()}
    assert lines == {"train": [0.5, 0.3], "validation": [0.6, 0.4]}
    assert ax.get_ylabel() == "loss"


def test_confusion_matrix_writes_every_nonzero_count_and_totals_the_mistakes():
    counts = np.diag(np.full(10, 9))
    counts[3, 8] = 2
    counts[7, 1] = 1
    fig = plots.confusion_matrix(counts)
    (ax,) = [a for a in fig.axes if a.get_title()]
    assert ax.get_title() == "Confusion matrix: 3 of 93 test images wrong"
    assert sorted(t.get_text() for t in ax.texts) == sorted(["1", "2"] + ["9"] * 10)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")


def test_validation_curves_overlay_one_line_per_run():
    fig = plots.validation_curves({"dense-h8": [0.5, 0.7], "dense-h32": [0.8, 0.85, 0.9]})
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"dense-h8", "dense-h32"}
    assert lines["dense-h32"].get_xdata().tolist() == [1, 2, 3]


def test_misclassified_per_class_puts_each_runs_bars_side_by_side():
    good = np.diag(np.full(10, 10))
    bad = good.copy()
    bad[4, 9] = 5  # five 4s taken for 9s
    bad[4, 4] -= 5
    fig = plots.misclassified_per_class({"good": good, "bad": bad})
    (ax,) = fig.axes
    bars = {c.get_label(): c for c in ax.containers}
    assert [p.get_height() for p in bars["bad"]] == [0, 0, 0, 0, 5, 0, 0, 0, 0, 0]
    assert [p.get_height() for p in bars["good"]] == [0] * 10
    # The two runs' bars for a digit sit next to each other, not on top of each other.
    good_right_edge = bars["good"][4].get_x() + bars["good"][4].get_width()
    assert good_right_edge == pytest.approx(bars["bad"][4].get_x())


def test_misclassified_per_class_without_counts_says_so():
    fig = plots.misclassified_per_class({})
    assert "No run logged confusion_matrix.json" in fig.texts[0].get_text()
