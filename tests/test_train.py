"""Training as the config asks: the tutorial's plain fit, or schedule and early stopping."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist_exp.config import DenseConfig, LRSchedule, TrainConfig
from mnist_exp.models import build_model
from mnist_exp.train import compile_model, confusion_matrix, training_callbacks


def test_the_tutorial_fits_with_no_callbacks_of_its_own():
    assert training_callbacks(TrainConfig()) == []


def test_cosine_schedule_goes_from_the_learning_rate_towards_zero_over_the_epochs():
    (callback,) = training_callbacks(
        TrainConfig(lr_schedule=LRSchedule.cosine, learning_rate=0.01, epochs=10)
    )
    assert isinstance(callback, keras.callbacks.LearningRateScheduler)
    rates = [callback.schedule(epoch) for epoch in range(10)]
    assert rates[0] == pytest.approx(0.01)
    assert rates[5] == pytest.approx(0.005)
    assert rates[9] == pytest.approx(0.01 * (1 + np.cos(np.pi * 0.9)) / 2)
    assert rates == sorted(rates, reverse=True)


def test_early_stopping_watches_val_accuracy_and_keeps_the_best_epoch():
    (callback,) = training_callbacks(TrainConfig(early_stopping_patience=3))
    assert isinstance(callback, keras.callbacks.EarlyStopping)
    assert (callback.monitor, callback.patience, callback.restore_best_weights) == (
        "val_accuracy", 3, True,
    )  # fmt: skip
    assert callback.mode == "max"  # higher is better


def test_optimizers_keep_their_name_in_a_process_that_compiles_several_models():
    names = []
    for _ in range(2):
        model = build_model(DenseConfig(hidden=4))
        compile_model(model, TrainConfig())
        names.append(model.optimizer.name)
    assert names == ["adam", "adam"]


def test_confusion_matrix_counts_true_digit_by_predicted_digit():
    y_true = np.array([0, 0, 1, 9, 9, 9])
    probabilities = np.eye(10)[[0, 1, 1, 9, 9, 4]]
    counts = confusion_matrix(y_true, probabilities)
    assert counts.shape == (10, 10) and counts.sum() == 6
    assert (counts[0, 0], counts[0, 1], counts[1, 1], counts[9, 9], counts[9, 4]) == (1, 1, 1, 2, 1)
