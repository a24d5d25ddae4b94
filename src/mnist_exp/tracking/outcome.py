"""What a run logs once it has trained: test metrics, figures, confusion matrix, model, run log.

Logged by run id rather than through MLflow's active run, so that in a sweep it can go to the
background worker (mnist_exp.tracking.background) while the next job trains. A run handed over stays
RUNNING until all of it is in, then ends FINISHED (or FAILED, with error.txt): a FINISHED run is
always complete, and one cut short is trained again by a re-run of its sweep.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mnist_exp.names import CONFUSION_MATRIX_FILE
from mnist_exp.tracking import runs, tracked_model
from mnist_exp.tracking.full_disk import disk_full
from mnist_exp.training import plots, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """Everything a trained run still has to log, none of it shared with the next job."""

    metrics: dict[str, float]  # test_loss, test_accuracy, fit_seconds
    history: dict[str, list[float]]
    sample_images: np.ndarray  # the first training images and their labels, for samples.png
    sample_labels: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    probabilities: np.ndarray
    model: Any
    misclassified_tiles: int
    run_log: str | None  # the run's console output, up to its "Done" line


# samples.png by what it shows: the same first training images in every run on the same data.
_samples_drawn: dict[bytes, bytes] = {}


def samples_png(images: np.ndarray, labels: np.ndarray) -> bytes:
    """samples.png as PNG bytes, drawn once per process for the same images: every job of a
    sweep logs the same figure, and it was a fifth of the figures' CPU (bench/RESULTS.md)."""
    key = hashlib.sha256(images.tobytes() + labels.tobytes()).digest()
    if key not in _samples_drawn:
        buffer = io.BytesIO()
        with plots.drawing_quickly():
            plots.sample_grid(images, labels).savefig(buffer, format="png")
        _samples_drawn[key] = buffer.getvalue()
    return _samples_drawn[key]


def drawn_per_run(outcome: Outcome, confusion: np.ndarray) -> dict[str, Callable[[], Figure]]:
    """The figures each run draws of its own, by file name (samples.png aside: `samples_png`);
    `confusion`, its confusion matrix."""
    return {
        "accuracy_curve.png": lambda: plots.accuracy_curve(outcome.history),
        "loss_curve.png": lambda: plots.loss_curve(outcome.history),
        "confusion_matrix.png": lambda: plots.confusion_matrix(confusion),
        "misclassified.png": lambda: plots.misclassified_grid(
            outcome.x_test, outcome.y_test, outcome.probabilities, outcome.misclassified_tiles
        ),
    }


def log_outcome(run_id: str, outcome: Outcome) -> None:
    """Log all of `outcome` into run `run_id`; then the CPU seconds that took, as the run's
    logging_cpu_seconds (of this thread: a sweep's next job trains on another)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    cpu = time.thread_time()
    client = MlflowClient()
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in outcome.metrics.items()])
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "samples.png"
        samples.write_bytes(samples_png(outcome.sample_images, outcome.sample_labels))
        client.log_artifact(run_id, str(samples))
    confusion = train.confusion_matrix(outcome.y_test, outcome.probabilities)
    with plots.drawing_quickly():
        for name, figure in drawn_per_run(outcome, confusion).items():
            client.log_figure(run_id, figure(), name)
    described = {"rows": "true digit", "columns": "predicted digit", "counts": confusion.tolist()}
    client.log_dict(run_id, described, CONFUSION_MATRIX_FILE)
    examples = outcome.x_test[:2]
    tracked_model.log_model(outcome.model, examples, outcome.probabilities[:2], run_id)
    if outcome.run_log is not None:
        client.log_text(run_id, outcome.run_log, "run.log")
    client.log_metric(run_id, "logging_cpu_seconds", time.thread_time() - cpu)


def log_and_end(run_id: str, run_name: str, outcome: Outcome) -> bool:
    """On the background worker: log `outcome`, then end the run FINISHED (True), or FAILED with
    the traceback in error.txt. Never raises: the job that trained it has moved on."""
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        log_outcome(run_id, outcome)
    except BaseException as err:
        artifacts = client.get_run(run_id).info.artifact_uri.removeprefix("file://")
        why = disk_full(err, {"artifacts": artifacts}) or f"{type(err).__name__}: {err}"
        log.error("Run '%s' (%s) could not log what it trained, recorded FAILED: %s",
                  run_name, run_id, why)  # fmt: skip
        runs.record_failure(traceback.format_exc(), run_id)
        return False
    client.set_terminated(run_id, "FINISHED")
    return True
