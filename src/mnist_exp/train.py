"""Compile, fit, evaluate and predict. Knows Keras, not MLflow: callbacks come from the caller."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import keras
import numpy as np

from mnist_exp.config import LRSchedule, TrainConfig
from mnist_exp.data import NUM_CLASSES, Prepared


@dataclass(frozen=True)
class FitResult:
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy
    seconds: float


def set_seed(seed: int) -> None:
    """Seeds Python, NumPy and the backend, so a config hash means one reproducible run."""
    keras.utils.set_random_seed(seed)


def compile_model(model: keras.Model, cfg: TrainConfig) -> None:
    # A fixed name: Keras would number a process's later optimizers adam_1, adam_2, ..., and a
    # tracker that logs the optimizer's config would show sweep jobs differing by that name.
    optimizer = keras.optimizers.get(
        {
            "class_name": cfg.optimizer.value,
            "config": {"learning_rate": cfg.learning_rate, "name": cfg.optimizer.value},
        }
    )
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])


def training_callbacks(cfg: TrainConfig) -> list[keras.callbacks.Callback]:
    """The callbacks the train config asks for: learning-rate schedule, early stopping."""
    callbacks = []
    if cfg.lr_schedule is LRSchedule.cosine:
        cosine = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=cfg.epochs)
        # Per epoch rather than per batch, so the rate lands in the logs as `learning_rate`.
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch: float(cosine(epoch))))
    if cfg.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                mode="max",
                patience=cfg.early_stopping_patience,
                restore_best_weights=True,
                verbose=1,  # says in the run log which epoch it stopped at and which it kept
            )
        )
    return callbacks


def fit(
    model: keras.Model, data: Prepared, cfg: TrainConfig, callbacks: list | None = None
) -> FitResult:
    """model.fit as the tutorial calls it; the config's callbacks run before the caller's, so
    those (e.g. a tracker) see the learning rate in the epoch's logs."""
    # A progress bar in a terminal; one line per epoch in logs and CI, where bars become noise.
    verbose = 1 if sys.stdout.isatty() else 2
    start = time.perf_counter()
    history = model.fit(
        data.x_train,
        data.y_train_cat,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        validation_split=cfg.validation_split,
        callbacks=[*training_callbacks(cfg), *(callbacks or [])],
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    return FitResult({k: [float(v) for v in vs] for k, vs in history.history.items()}, seconds)


def evaluate(model: keras.Model, data: Prepared) -> dict[str, float]:
    loss, accuracy = model.evaluate(data.x_test, data.y_test_cat, verbose=0)
    return {"test_loss": float(loss), "test_accuracy": float(accuracy)}


def predict_probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return model.predict(x, batch_size=1024, verbose=0)


def confusion_matrix(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """counts[true, predicted] over the ten digits."""
    y_pred = probabilities.argmax(axis=1)
    pairs = np.bincount(y_true.astype(int) * NUM_CLASSES + y_pred, minlength=NUM_CLASSES**2)
    return pairs.reshape(NUM_CLASSES, NUM_CLASSES)
