"""A run's checkpoint, kept every epoch so a killed or crashed run resumes where it stopped.

Keras's BackupAndRestore keeps the weights, the optimizer's state and the epoch; beside it we keep
the per-epoch history (the curves and plots need every epoch, not only the resumed ones), early
stopping's best weights, and once fit() has returned, the fitted weights, so that a crash while
evaluating or logging does not train again. Knows Keras, not MLflow.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from mnist_exp.errors import UserError

HISTORY = "history.json"
BEST_WEIGHTS = "best_weights.npz"
FITTED_WEIGHTS = "fitted.weights.h5"
# What BackupAndRestore writes; `epoch` in its metadata is the number of epochs completed.
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_METADATA = "training_metadata.json"


class CheckpointDirUnusable(UserError):
    """tracking.checkpoint_dir cannot be written; raised before a run is recorded."""


def check_writable(root: str | Path) -> None:
    """Fail before training, not at the end of the first epoch, where checkpoints cannot go."""
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        probe = Path(root) / f".writable-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise CheckpointDirUnusable(
            f"tracking.checkpoint_dir={root}: cannot write there ({err.strerror or err}). Pick "
            "a writable directory, or tracking.checkpoint_dir=null to keep no checkpoints."
        ) from None


def _write_atomically(path: Path, text: str) -> None:
    """A kill mid-write leaves the previous version, never half of the new one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


class Checkpoint:
    """The checkpoint of one run, in its own directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def exists(self) -> bool:
        return (self.directory / BACKUP_WEIGHTS).is_file() or self.is_fitted()

    def is_fitted(self) -> bool:
        return (self.directory / FITTED_WEIGHTS).is_file() and self._saved()["fitted"]

    def completed_epochs(self) -> int:
        """Epochs the checkpoint holds: where training resumes."""
        if self.is_fitted():
            return len(self._saved()["history"].get("loss", []))
        try:
            return json.loads((self.directory / BACKUP_METADATA).read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            return 0

    def history(self, epochs: int) -> dict[str, list[float]]:
        """The history of the first `epochs` epochs, as saved."""
        return {k: v[:epochs] for k, v in self._saved()["history"].items()}

    def _saved(self) -> dict:
        try:
            return json.loads((self.directory / HISTORY).read_text())
        except (OSError, ValueError):
            return {"history": {}, "fitted": False}

    def save_history(self, history: dict[str, list[float]], fitted: bool = False) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.directory / HISTORY, json.dumps({"history": history,
                                                                "fitted": fitted}))  # fmt: skip

    def save_fitted(self, model: keras.Model, history: dict[str, list[float]]) -> None:
        """fit() has returned: keep its weights (best ones restored, if asked) and history."""
        model.save_weights(self.directory / FITTED_WEIGHTS, overwrite=True)
        self.save_history(history, fitted=True)

    def load_fitted(self, model: keras.Model) -> dict[str, list[float]]:
        if model.optimizer is not None and not model.optimizer.built:
            # As BackupAndRestore does: the file holds the optimizer's state too.
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.directory / FITTED_WEIGHTS)
        return self._saved()["history"]

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def callbacks(self, early_stopping: keras.callbacks.EarlyStopping | None) -> list:
        """What keeps the checkpoint during fit(), in this order: the history first, then
        Keras's backup, so the history always covers at least the epochs backed up."""
        return [
            HistoryKeeper(self, early_stopping),
            # Two generations: if the newest weights file was cut short by a kill, the previous
            # one is loaded.
            keras.callbacks.BackupAndRestore(
                str(self.directory), double_checkpoint=True, delete_checkpoint=False
            ),
        ]


class HistoryKeeper(keras.callbacks.Callback):
    """Saves the history after every epoch; on resume, continues it and early stopping's state."""

    def __init__(self, checkpoint: Checkpoint, early_stopping: keras.callbacks.Callback | None):
        super().__init__()
        self.checkpoint = checkpoint
        self.early_stopping = early_stopping
        self.history: dict[str, list[float]] = {}
        self.resumed_from = 0
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._started:
            return
        # The first epoch fit() runs is the one BackupAndRestore resumed from (it may fall back
        # to an older backup than the newest): the history goes up to there.
        self._started = True
        self.resumed_from = epoch
        self.history = self.checkpoint.history(epoch)
        if epoch and self.early_stopping is not None:
            self._restore_early_stopping(epoch)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.checkpoint.save_history(self.history)
        stopper = self.early_stopping
        if stopper is not None and stopper.restore_best_weights and stopper.best_epoch == epoch:
            best = stopper.best_weights or []
            np.savez(self.checkpoint.directory / BEST_WEIGHTS, *best)

    def on_train_end(self, logs=None):
        if not self._started:  # every epoch was already done before this fit() began
            self.resumed_from = self.checkpoint.completed_epochs()
            self.history = self.checkpoint.history(self.resumed_from)

    def _restore_early_stopping(self, epochs_done: int) -> None:
        """Early stopping as it stood after `epochs_done` epochs: the best value, its epoch,
        how long it has waited (and the best weights, kept on disk when they are restored)."""
        stopper = self.early_stopping
        sign = -1 if stopper.mode == "min" else 1
        for epoch, value in enumerate(self.history.get(stopper.monitor, [])):
            stopper.wait += 1
            # EarlyStopping's own test of an improvement (ours always gives it a mode).
            if stopper.best is None or sign * (value - stopper.best) > abs(stopper.min_delta):
                stopper.best, stopper.best_epoch, stopper.wait = value, epoch, 0
        best = self.checkpoint.directory / BEST_WEIGHTS
        if stopper.restore_best_weights and best.is_file():
            with np.load(best) as saved:
                stopper.best_weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
