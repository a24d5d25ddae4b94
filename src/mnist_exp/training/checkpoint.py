"""A run's checkpoint, kept every epoch so a killed or crashed run resumes where it stopped.

Each epoch keeps the weights with the optimizer's state, early stopping's best weights and the
per-epoch history (the curves and plots need every epoch, not only the resumed ones); once fit()
has returned, the fitted weights, so that a crash while evaluating or logging does not train
again. Every file is written under a temporary name, fsynced and renamed; the weights files are
named by epoch, and one manifest (written last, the same way) says which ones make the
checkpoint, with their sha256. A kill at any moment leaves the previous checkpoint whole, and a
file damaged afterwards is found before it is loaded (CheckpointUnreadable). Knows Keras, not
MLflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from mnist_exp.errors import UserError

# The manifest: {"epoch": epochs completed, "history": ..., "fitted": bool, "files": {role:
# name}, "sha256": {name: digest}}. `epoch` is where training resumes.
MANIFEST = "training_metadata.json"
FITTED_WEIGHTS = "fitted.weights.h5"
# Keras's save_weights insists on this ending, np.savez on its own.
PARTIAL_PREFIX = ".partial-"


class CheckpointDirUnusable(UserError):
    """tracking.checkpoint_dir cannot be written; raised before a run is recorded."""


class CheckpointUnreadable(UserError):
    """A checkpoint that exists but cannot be read back as it was written (a file damaged or
    missing, or written by an older version)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"checkpoint {path} cannot be read ({reason})")
        self.path = path
        self.reason = reason


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


def write_atomically(path: Path, write: Callable[[Path], None]) -> str:
    """`write(temporary)`, then fsync and rename it to `path`: a kill or a full disk mid-write
    leaves the previous version, never half of the new one. The new file's sha256."""
    partial = path.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{path.name}")
    try:
        write(partial)
        with open(partial, "rb") as written:
            digest = hashlib.file_digest(written, "sha256").hexdigest()
            os.fsync(written.fileno())
        os.replace(partial, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut too
        finally:
            os.close(directory)
    except OSError as err:
        partial.unlink(missing_ok=True)
        # h5py's errors carry neither errno nor the file: say which file could not be written.
        if err.errno is None or err.filename is None:
            raise OSError(err.errno, str(err), str(path)) from err
        raise
    return digest


def sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


class Checkpoint:
    """The checkpoint of one run, in its own directory."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def exists(self) -> bool:
        """A checkpoint was committed here (whether it still reads is `verify`'s question)."""
        return (self.directory / MANIFEST).is_file()

    def manifest(self) -> dict:
        """The manifest, its files checked against their sha256; CheckpointUnreadable if not."""
        path = self.directory / MANIFEST
        try:
            saved = json.loads(path.read_text())
            files, digests = saved["files"], saved["sha256"]
            int(saved["epoch"]), dict(saved["history"]), bool(saved["fitted"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointUnreadable(path, f"manifest: {type(err).__name__}: {err}") from None
        for name in files.values():
            try:
                found = sha256(self.directory / name)
            except OSError as err:
                raise CheckpointUnreadable(
                    self.directory / name, err.strerror or str(err)
                ) from None
            if found != digests.get(name):
                raise CheckpointUnreadable(self.directory / name, "its sha256 is not the one saved")
        return saved

    def verify(self) -> None:
        """Raise CheckpointUnreadable unless every file is as it was written."""
        self.manifest()

    def is_fitted(self) -> bool:
        return self.exists() and self.manifest()["fitted"]

    def completed_epochs(self) -> int:
        """Epochs the checkpoint holds: where training resumes (0 if none, or unreadable)."""
        try:
            return int(json.loads((self.directory / MANIFEST).read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def history(self) -> dict[str, list[float]]:
        return self.manifest()["history"] if self.exists() else {}

    def restore(self, model: keras.Model) -> int:
        """Load the checkpoint's weights (and optimizer state) into `model`; the epochs done."""
        if not self.exists():
            return 0
        saved = self.manifest()
        self._load(model, self.directory / saved["files"]["weights"])
        return int(saved["epoch"])

    def best_weights(self) -> list[np.ndarray] | None:
        name = self.manifest()["files"].get("best") if self.exists() else None
        if name is None:
            return None
        try:
            with np.load(self.directory / name) as saved:
                return [saved[f"arr_{i}"] for i in range(len(saved.files))]
        except (OSError, ValueError) as err:
            raise CheckpointUnreadable(self.directory / name, str(err)) from None

    def _load(self, model: keras.Model, weights: Path) -> None:
        optimizer = getattr(model, "optimizer", None)  # None until compiled
        if optimizer is not None and not optimizer.built:
            # As Keras's BackupAndRestore does: the file holds the optimizer's state too.
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(weights)
        except Exception as err:  # h5py's OSError, or Keras's ValueError for missing variables
            raise CheckpointUnreadable(weights, f"{type(err).__name__}: {err}") from None

    def save_epoch(self, model: keras.Model, history: dict, best: list | None) -> None:
        """After an epoch: its weights (and early stopping's best ones, when they changed),
        then the manifest that makes them the checkpoint, then the files it no longer names."""
        self.directory.mkdir(parents=True, exist_ok=True)
        epoch = len(history.get("loss", []))
        previous = self._files()
        files = {"weights": f"epoch-{epoch}.weights.h5"}
        digests = {files["weights"]: write_atomically(self.directory / files["weights"],
                                                      model.save_weights)}  # fmt: skip
        if best is not None:
            files["best"] = f"best-{epoch}.npz"
            digests[files["best"]] = write_atomically(
                self.directory / files["best"], lambda path: _savez(path, best)
            )
        elif "best" in previous:
            files["best"] = previous["best"]
            digests[files["best"]] = sha256(self.directory / files["best"])
        self._commit(epoch, history, False, files, digests)

    def save_fitted(self, model: keras.Model, history: dict[str, list[float]]) -> None:
        """fit() has returned: keep its weights (best ones restored, if asked) and history."""
        self.directory.mkdir(parents=True, exist_ok=True)
        digest = write_atomically(self.directory / FITTED_WEIGHTS, model.save_weights)
        epochs = len(history.get("loss", []))
        self._commit(epochs, history, True, {"weights": FITTED_WEIGHTS}, {FITTED_WEIGHTS: digest})

    def load_fitted(self, model: keras.Model) -> dict[str, list[float]]:
        saved = self.manifest()
        self._load(model, self.directory / saved["files"]["weights"])
        return saved["history"]

    def _files(self) -> dict[str, str]:
        try:
            return json.loads((self.directory / MANIFEST).read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _commit(self, epoch: int, history: dict, fitted: bool, files: dict, digests: dict):
        manifest = {"epoch": epoch, "history": history, "fitted": fitted, "files": files,
                    "sha256": digests}  # fmt: skip
        write_atomically(self.directory / MANIFEST,
                         lambda path: path.write_text(json.dumps(manifest)))  # fmt: skip
        for stale in self.directory.iterdir():
            if stale.name not in (MANIFEST, *files.values()) and not stale.name.endswith(".lock"):
                stale.unlink(missing_ok=True)

    def move_aside(self) -> Path:
        """Rename the checkpoint's directory out of the way (kept, not deleted); the new name."""
        aside = self.directory.with_name(
            f"{self.directory.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        )
        os.replace(self.directory, aside)
        return aside

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def callbacks(self, early_stopping: keras.callbacks.EarlyStopping | None,
                  resumed_from: int) -> list:  # fmt: skip
        """What keeps the checkpoint during fit()."""
        return [CheckpointKeeper(self, early_stopping, resumed_from)]


def _savez(path: Path, arrays: list) -> None:
    with open(path, "wb") as file:  # a file object: np.savez would append .npz to a name
        np.savez(file, *arrays)


class CheckpointKeeper(keras.callbacks.Callback):
    """Saves the checkpoint after every epoch; on resume, continues the history and early
    stopping's state from it."""

    def __init__(self, checkpoint: Checkpoint, early_stopping: keras.callbacks.Callback | None,
                 resumed_from: int = 0):  # fmt: skip
        super().__init__()
        self.checkpoint = checkpoint
        self.early_stopping = early_stopping
        self.resumed_from = resumed_from
        saved = checkpoint.history() if resumed_from else {}
        self.history = {k: v[:resumed_from] for k, v in saved.items()}

    def on_train_begin(self, logs=None):
        if self.resumed_from and self.early_stopping is not None:
            self._restore_early_stopping()

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        stopper = self.early_stopping
        best = None
        if stopper is not None and stopper.restore_best_weights and stopper.best_epoch == epoch:
            best = stopper.best_weights or []
        self.checkpoint.save_epoch(self.model, self.history, best)

    def _restore_early_stopping(self) -> None:
        """Early stopping as it stood after the epochs done: the best value, its epoch, how long
        it has waited (and the best weights, kept on disk when they are restored)."""
        stopper = self.early_stopping
        sign = -1 if stopper.mode == "min" else 1
        for epoch, value in enumerate(self.history.get(stopper.monitor, [])):
            stopper.wait += 1
            # EarlyStopping's own test of an improvement (ours always gives it a mode).
            if stopper.best is None or sign * (value - stopper.best) > abs(stopper.min_delta):
                stopper.best, stopper.best_epoch, stopper.wait = value, epoch, 0
        if stopper.restore_best_weights:
            stopper.best_weights = self.checkpoint.best_weights()
