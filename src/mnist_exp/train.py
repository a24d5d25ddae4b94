"""Compile, fit, evaluate and predict. Knows Keras, not MLflow: callbacks come from the caller."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import keras
import numpy as np

from mnist_exp.config import TrainConfig
from mnist_exp.data import Prepared


@dataclass(frozen=True)
class FitResult:
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy
    seconds: float


def set_seed(seed: int) -> None:
    """Seeds Python, NumPy and the backend, so a config hash means one reproducible run."""
    keras.utils.set_random_seed(seed)


def compile_model(model: keras.Model, cfg: TrainConfig) -> None:
    optimizer = keras.optimizers.get(
        {"class_name": cfg.optimizer.value, "config": {"learning_rate": cfg.learning_rate}}
    )
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])


def fit(
    model: keras.Model, data: Prepared, cfg: TrainConfig, callbacks: list | None = None
) -> FitResult:
    # A progress bar in a terminal; one line per epoch in logs and CI, where bars become noise.
    verbose = 1 if sys.stdout.isatty() else 2
    start = time.perf_counter()
    history = model.fit(
        data.x_train,
        data.y_train_cat,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        validation_split=cfg.validation_split,
        callbacks=callbacks or [],
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    return FitResult({k: [float(v) for v in vs] for k, vs in history.history.items()}, seconds)


def evaluate(model: keras.Model, data: Prepared) -> dict[str, float]:
    loss, accuracy = model.evaluate(data.x_test, data.y_test_cat, verbose=0)
    return {"test_loss": float(loss), "test_accuracy": float(accuracy)}


def predict_probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return model.predict(x, batch_size=1024, verbose=0)
