"""One tracked run, whichever way it starts: the process prepared for it, then data -> model ->
fit -> figures -> MLflow. The only module that knows every step.

The command line (mnist_exp.run) and the Python API (mnist_exp.experiment) both call `prepare`
and then `train_and_log`, so MLflow cannot tell their runs apart.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_exp.config import Config
from mnist_exp.names import RESTARTED_TAG
from mnist_exp.sweeps.search import trial as search_trial
from mnist_exp.tracking import (
    datasets,
    epochs,
    full_disk,
    orphans,
    outage,
    queries,
    resume_lock,
    runs,
    store,
)
from mnist_exp.training import backend, data, hardware
from mnist_exp.training.history import best_epoch
from mnist_exp.training.mnist import check_cache_dir

log = logging.getLogger("mnist_exp")


def prepare(typed: Config, threads: int | None) -> str:
    """Everything a run needs before it is recorded, read once as Keras and TensorFlow load:
    oneDNN where it pays, Keras's backend and its threads, a data cache that can be filled, the
    store and experiment opened, and the runs of processes that died ended; the experiment id.
    A bad cache directory or store fails here, with nothing recorded."""
    hardware.use_onednn_if_it_pays(typed.model.family == "cnn", typed.train.backend.value)
    backend.use_backend(typed.train.backend.value, threads)
    check_cache_dir(typed.data.cache_dir)
    full_disk.quiet_mlflow_reports()
    experiment_id = store.use_experiment(typed.tracking)
    orphans.end_orphans_in_experiment(experiment_id)
    return experiment_id


@dataclass(frozen=True)
class TrainedRun:
    """What one tracked run gives back besides what MLflow keeps."""

    run_id: str
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy, ...
    metrics: dict[str, float]  # test_loss, test_accuracy, fit_seconds
    model: Any  # the trained keras.Model, also logged as runs:/<run_id>/model


@dataclass
class Resume:
    """What a run continues from: an earlier KILLED or FAILED run of this config, its
    checkpoint, the lock that makes this process the one resuming it, and why training starts
    again from epoch 0 if its checkpoint could not be read."""

    run: Any = None  # None: a new run
    checkpoint: Any = None
    lock: Any = None
    restarted: str | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def resumable_run(typed: Config, config: dict) -> Resume:
    """The run to continue and its checkpoint: this config's latest run, if it ended KILLED or
    FAILED with a checkpoint left here, locked against another process resuming it too
    (resume_lock.RunBusy). A checkpoint that cannot be read is moved aside, and the same run
    starts again from epoch 0."""
    # Not at the top: it imports Keras, which must wait until `prepare` has chosen its backend.
    from mnist_exp.training.checkpoint import Checkpoint, CheckpointUnreadable, check_writable

    root = typed.tracking.checkpoint_dir
    if root:
        check_writable(root)
    latest = runs.latest_run_like(config) if root else None
    if latest is not None and latest.info.status == "RUNNING":
        resume_lock.check_free(root, latest.info.run_id, latest.info.run_name)
    if latest is None or latest.info.status not in ("KILLED", "FAILED"):
        return Resume()
    found = Checkpoint(os.path.join(root, latest.info.run_id))
    if not found.exists():
        return Resume()
    if typed.tracking.rerun:
        log.info("tracking.rerun=true: not resuming run %s; its checkpoint is dropped",
                 latest.info.run_id)  # fmt: skip
        found.remove()
        return Resume()
    lock = resume_lock.take(root, latest.info.run_id, latest.info.run_name)
    # Read again under the lock: a process that held it may have resumed the run meanwhile.
    latest = runs.get_run(latest.info.run_id)
    if latest.info.status not in ("KILLED", "FAILED") or not found.exists():
        lock.release()
        return Resume()
    try:
        found.verify()
    except CheckpointUnreadable as unreadable:
        return Resume(latest, found, lock, restart_from_zero(found, unreadable, latest))
    return Resume(latest, found, lock)


def restart_from_zero(checkpoint: Any, unreadable: Exception, run: Any) -> str:
    """Move an unreadable checkpoint aside (kept for a look, never deleted) and say so in one
    line; the note tagged on the run that starts again from epoch 0."""
    aside = checkpoint.move_aside()
    log.warning("The %s; moved to %s. Run %s starts again from epoch 0.",
                unreadable, aside, run.info.run_id)  # fmt: skip
    return (
        f"At {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: the {unreadable}; it was moved to {aside}, "
        "and training started again from epoch 0 in this run. Metrics logged before then are "
        "the earlier try's: MLflow keeps them, so each step up to where it had got has two "
        "values, and the later one (the latest timestamp) is this try's."
    )


def train_and_log(
    typed: Config,
    config: dict,
    name: str,
    threads: int | None,
    log_path: Path | None,
    background: bool = False,
    trial: Any = None,
    tags: dict[str, str] | None = None,
) -> TrainedRun:
    """One tracked run: data, model, fit, evaluation, figures and model into MLflow.

    `threads` for the backend's ops (None: all cores); `log_path`, the log file to keep as the
    run's run.log. With `background`, the figures and model are logged by the background worker
    (tracking.background) and the run ends FINISHED there, once they are all in. A search's
    `trial` is told each epoch's val_accuracy and may be pruned (errors.PrunedTrial). A
    run of this config that was KILLED or FAILED with a checkpoint is continued, in the same
    MLflow run, from its last completed epoch."""
    backend.load_keras()
    # A search continues at the trial level (study.py): a trial trains whole, in a run of its
    # own, so it neither resumes an earlier run nor keeps checkpoints.
    keep_checkpoints = typed.tracking.checkpoint_dir and trial is None
    found = resumable_run(typed, config) if keep_checkpoints else Resume()
    try:
        return _train_and_log(typed, config, name, threads, log_path, background, trial, tags,
                              found)  # fmt: skip
    finally:
        found.release()  # the run is ours (RUNNING, with our pid) or ended by now


def _train_and_log(typed, config, name, threads, log_path, background, trial, tags,
                   found: Resume) -> TrainedRun:  # fmt: skip
    # Here, not at the top: these import Keras, which `prepare` must set up first.
    from mnist_exp.tracking import outcome
    from mnist_exp.training import models, plots, train
    from mnist_exp.training.checkpoint import Checkpoint, CheckpointUnreadable

    resume, checkpoint = found.run, found.checkpoint
    epochs_done = checkpoint.completed_epochs() if checkpoint and not found.restarted else 0
    tags = {**search_trial.trial_tags(trial), **(tags or {})}
    metrics_seconds = typed.tracking.system_metrics_seconds
    with runs.job_run(config, name, metrics_seconds, tags, resume, epochs_done,
                      found.restarted) as run:  # fmt: skip
        if found.restarted:
            log.info("Training run %s (%s) again from epoch 0", run.info.run_id,
                     resume.info.status)  # fmt: skip
        elif resume is not None:
            log.info("Resuming run %s (%s) from its checkpoint after epoch %d", run.info.run_id,
                     resume.info.status, epochs_done)  # fmt: skip
        elif typed.tracking.checkpoint_dir and trial is None:
            checkpoint = Checkpoint(os.path.join(typed.tracking.checkpoint_dir, run.info.run_id))
        threads = train.limit_threads(threads)
        keras_backend = backend.loaded_backend()
        log.info("Run '%s' (%s), experiment '%s', Keras on %s", name, run.info.run_id,
                 typed.tracking.experiment, keras_backend)  # fmt: skip
        sources = tuple(s.value for s in typed.data.sources)
        mnist, prepared = data.load_prepared(
            typed.data.cache_dir, sources, typed.data.limit_train, typed.data.limit_test
        )
        datasets.log_datasets(prepared, typed.data.cache_dir)
        log.info(
            "Training %s on %d images (%.0f%% held out for validation), testing on %d; "
            "%s threads: %s",
            name, len(prepared.x_train), typed.train.validation_split * 100, len(prepared.x_test),
            "TensorFlow" if keras_backend == backend.TENSORFLOW else "JAX", threads or "all cores",
        )  # fmt: skip

        train.set_seed(typed.seed)
        precision = train.set_precision(typed.train.precision)
        ran_on = {"precision": precision.value, "keras_backend": keras_backend}
        if keras_backend == backend.TENSORFLOW:  # oneDNN is TensorFlow's
            ran_on["onednn"] = "on" if hardware.onednn_enabled() else "off"
        runs.tag_run(ran_on)
        onednn = f", TensorFlow oneDNN {ran_on['onednn']}" if "onednn" in ran_on else ""
        log.info("Precision %s (train.precision=%s)%s",
                 precision.value, typed.train.precision.value, onednn)  # fmt: skip

        def built():
            model = models.build_model(typed.model)
            train.compile_model(
                model, typed.train, train.train_samples(len(prepared.x_train), typed.train)
            )
            return model

        model = built()
        callbacks = [epochs.epoch_metrics_callback(resumed=resume is not None),
                     outage.server_watch()]  # fmt: skip
        if trial is not None:  # last: the pruned epoch is logged first
            callbacks.append(search_trial.pruning_callback(trial))
        try:
            fitted = train.fit(model, prepared, typed.train, callbacks, checkpoint)
        except CheckpointUnreadable as unreadable:
            # Its files were as saved, yet Keras could not load them (e.g. another model's):
            # as for a damaged one, from epoch 0 with the weights the seed gives.
            runs.tag_run({RESTARTED_TAG: restart_from_zero(checkpoint, unreadable, run)})
            train.set_seed(typed.seed)
            model = built()
            fitted = train.fit(model, prepared, typed.train, callbacks, checkpoint)
        outage.wait_if_away()
        if fitted.resumed_from:
            epochs.log_missing_epochs(fitted.history, fitted.resumed_from)
        scores, probabilities = train.evaluate(model, prepared, typed.train.test_time_augment)
        metrics = {**scores, "fit_seconds": fitted.seconds}
        if (best := best_epoch(fitted.history.get("val_accuracy", []))) is not None:
            metrics["best_epoch"] = best
        plain = scores.get("test_accuracy_plain")
        plain = "" if plain is None else f" (test-time augmented; without: {plain:.4f})"
        link = queries.run_link(run)
        where = f"Run: {link}{queries.ui_hint(link)}" if link else f"Run {run.info.run_id}"
        log.info("Done: test_accuracy=%.4f%s test_loss=%.4f fit %.1fs. %s",
                 scores["test_accuracy"], plain, scores["test_loss"], fitted.seconds,
                 where)  # fmt: skip
        trained = outcome.Outcome(
            metrics=metrics,
            history=fitted.history,
            sample_images=mnist.x_train[: plots.SAMPLES],
            sample_labels=mnist.y_train[: plots.SAMPLES],
            x_test=prepared.x_test,
            y_test=prepared.y_test,
            probabilities=probabilities,
            model=model,
            misclassified_tiles=typed.tracking.misclassified_tiles,
            # The console output up to here, kept as the run's run.log.
            run_log=read_text(log_path),
        )
        run_id = run.info.run_id

        def finish() -> None:
            # Only once the run is FINISHED: until then a re-run can still resume it.
            if outcome.log_and_end(run_id, name, trained) and checkpoint is not None:
                forget(checkpoint)

        if background:
            runs.finish_in_background(run, finish)
        else:
            outcome.log_outcome(run_id, trained)
    if checkpoint is not None and not background:
        forget(checkpoint)  # the run is FINISHED: nothing left to resume
    return TrainedRun(run.info.run_id, fitted.history, metrics, model)


def forget(checkpoint: Any) -> None:
    """A FINISHED run's checkpoint and resume lock, removed."""
    checkpoint.remove()
    resume_lock.remove(checkpoint.directory.parent, checkpoint.directory.name)


def read_text(path: Path | None) -> str | None:
    try:
        return path.read_text() if path is not None else None
    except OSError:
        return None
