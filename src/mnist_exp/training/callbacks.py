"""The Keras callbacks our fit adds to the tutorial's: what each epoch logs beyond Keras's own
metrics, and a stop for an interrupt that a library swallowed."""

from __future__ import annotations

import time

import keras

from mnist_exp import interrupts


class LearningRateInLogs(keras.callbacks.Callback):
    """Adds the optimizer's current `learning_rate` to each epoch's logs, as Keras's own
    LearningRateScheduler does for the epoch-wise schedules, so a per-step schedule is tracked
    too (the rate the last step of the epoch used)."""

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` and `train_samples_per_second` to each epoch's logs.

    Like Keras's own LearningRateScheduler adding `learning_rate`: every later callback (MLflow's,
    History) then sees them as ordinary per-epoch metrics. Throughput counts the training part
    of the epoch only, up to the start of validation.
    """

    def __init__(self, train_samples: int):
        super().__init__()
        self.train_samples = train_samples

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_seconds = None

    def on_test_begin(self, logs=None):
        if self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        logs["epoch_seconds"] = seconds
        logs["train_samples_per_second"] = self.train_samples / (self._train_seconds or seconds)


class StopIfInterrupted(keras.callbacks.Callback):
    """Before each epoch, raises a Ctrl-C or kill that a library swallowed (mnist_exp.interrupts),
    so the fit ends there, its last epoch kept, rather than training on to the end."""

    def on_epoch_begin(self, epoch, logs=None):
        interrupts.raise_if_received()
