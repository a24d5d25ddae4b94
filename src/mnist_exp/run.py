"""The Hydra entry point: validate the config, then data -> model -> fit -> figures -> MLflow.

python -m mnist_exp.run                              # the tutorial's baseline
python -m mnist_exp.run model=cnn                    # the convolutional network
python -m mnist_exp.run -m model.hidden=64,128,256   # a sweep: one parent, three child runs
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_exp import backend, hardware
from mnist_exp.cli import stop_on_sigterm
from mnist_exp.config import PROJECT_ROOT, Config, validate
from mnist_exp.identity import plain_dict, run_name

log = logging.getLogger("mnist_exp")


# An absolute path: Hydra would read a relative one as a package path when this module is not
# __main__ (the mnist-exp-run command, a notebook).
@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> float | None:
    typed = validate(cfg)  # before anything slow: a bad override costs nothing
    hydra_cfg = HydraConfig.get()
    threads = typed.train.threads or cores_per_job(hydra_cfg.launcher)

    # Read once, as Keras and TensorFlow load; heavy imports only once the config is good.
    hardware.use_onednn_if_it_pays(typed.model.family == "cnn", typed.train.backend.value)
    backend.use_backend(typed.train.backend.value, threads)
    from mnist_exp import data, orphans, store, sweep

    # Also in a launcher's worker process, where this function is all that runs of this module.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop_on_sigterm)
    config = plain_dict(cfg)
    name = run_name(typed, list(hydra_cfg.overrides.task))
    # Hydra's log of this job, so the run keeps its console output too.
    log_path = Path(hydra_cfg.runtime.output_dir) / f"{hydra_cfg.job.name}.log"
    data.check_cache_dir(typed.data.cache_dir)  # before a run is recorded, not inside it
    orphans.end_orphans_in_experiment(store.use_experiment(typed.tracking))
    if hydra_cfg.mode != RunMode.MULTIRUN:
        train_and_log(typed, config, name, threads, log_path)
        return None
    from mnist_exp.search_trial import job_trial

    trial = job_trial(hydra_cfg.sweeper)  # None unless a search (hydra/sweeper=search) runs it
    # Not through a tracking server: its outages are waited out by the job (mnist_exp.outage),
    # which the background worker does not do yet.
    background = runs_in_this_process(hydra_cfg.launcher) and store.is_local_store(
        typed.tracking.uri
    )

    def train() -> dict[str, list[float]]:
        return train_and_log(typed, config, name, threads, log_path, background, trial).history

    return sweep.run_job(typed, config, name, train)


def runs_in_this_process(launcher: DictConfig) -> bool:
    """Whether the jobs of a sweep run one after another in this process (Hydra's basic
    launcher, also under the Optuna sweeper), where one job's logging can overlap the next's
    training; a launcher's worker process may be stopped as soon as its job returns."""
    return launcher.get("_target_", "").endswith(".BasicLauncher")


def cores_per_job(launcher: DictConfig) -> int | None:
    """The cores a job may use: what Ray reserved for it, or this machine's cores shared out
    among the jobs joblib runs at once; None when jobs run one at a time (TensorFlow then uses
    them all)."""
    reserved = OmegaConf.select(launcher, "ray.remote.num_cpus")  # hydra-ray-launcher
    if reserved:
        return max(1, int(reserved))
    n_jobs = launcher.get("n_jobs") or 1  # hydra-joblib-launcher; -1 means one per core
    cores = os.cpu_count() or 1
    parallel = cores + 1 + n_jobs if n_jobs < 0 else n_jobs
    return max(1, cores // parallel) if parallel > 1 else None


@dataclass(frozen=True)
class TrainedRun:
    """What one tracked run gives back besides what MLflow keeps."""

    run_id: str
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy, ...
    metrics: dict[str, float]  # test_loss, test_accuracy, fit_seconds
    model: Any  # the trained keras.Model, also logged as runs:/<run_id>/model


def resumable_run(typed: Config, config: dict) -> tuple[object | None, object | None]:
    """The run to continue and its checkpoint: this config's latest run, if it ended KILLED or
    FAILED with a checkpoint left here; (None, None) to start a new run."""
    from mnist_exp import tracking
    from mnist_exp.checkpoint import Checkpoint, check_writable

    root = typed.tracking.checkpoint_dir
    if root:
        check_writable(root)
    latest = tracking.latest_run_like(config) if root else None
    if latest is None or latest.info.status not in ("KILLED", "FAILED"):
        return None, None
    found = Checkpoint(os.path.join(root, latest.info.run_id))
    if not found.exists():
        return None, None
    if typed.tracking.rerun:
        log.info("tracking.rerun=true: not resuming run %s; its checkpoint is dropped",
                 latest.info.run_id)  # fmt: skip
        found.remove()
        return None, None
    return latest, found


def train_and_log(
    typed: Config,
    config: dict,
    name: str,
    threads: int | None,
    log_path: Path | None,
    background: bool = False,
    trial: Any = None,
) -> TrainedRun:
    """One tracked run: data, model, fit, evaluation, figures and model into MLflow.

    `threads` for the backend's ops (None: all cores); `log_path`, the log file to keep as the
    run's run.log. With `background`, the figures and model are logged by the background worker
    (mnist_exp.background) and the run ends FINISHED there, once they are all in. A search's
    `trial` is told each epoch's val_accuracy and may be pruned (search_trial.PrunedTrial). A
    run of this config that was KILLED or FAILED with a checkpoint is continued, in the same
    MLflow run, from its last completed epoch."""
    backend.load_keras()  # before the modules that import it
    from mnist_exp import data, models, outage, outcome, search_trial, tracking, train
    from mnist_exp.checkpoint import Checkpoint

    # A search continues at the trial level (study.py): a trial trains whole, in a run of its
    # own, so it neither resumes an earlier run nor keeps checkpoints.
    keep_checkpoints = typed.tracking.checkpoint_dir and trial is None
    resume, checkpoint = resumable_run(typed, config) if keep_checkpoints else (None, None)
    epochs_done = checkpoint.completed_epochs() if checkpoint else 0
    tags = search_trial.trial_tags(trial)
    metrics_seconds = typed.tracking.system_metrics_seconds
    with tracking.job_run(config, name, metrics_seconds, tags, resume, epochs_done) as run:
        if resume is not None:
            log.info("Resuming run %s (%s) from its checkpoint after epoch %d", run.info.run_id,
                     resume.info.status, epochs_done)  # fmt: skip
        elif keep_checkpoints:
            checkpoint = Checkpoint(os.path.join(typed.tracking.checkpoint_dir, run.info.run_id))
        threads = train.limit_threads(threads)
        keras_backend = backend.loaded_backend()
        log.info("Run '%s' (%s), experiment '%s', Keras on %s", name, run.info.run_id,
                 typed.tracking.experiment, keras_backend)  # fmt: skip
        sources = tuple(s.value for s in typed.data.sources)
        mnist, prepared = data.load_prepared(
            typed.data.cache_dir, sources, typed.data.limit_train, typed.data.limit_test
        )
        tracking.log_datasets(prepared, typed.data.cache_dir)
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
        tracking.tag_run(ran_on)
        onednn = f", TensorFlow oneDNN {ran_on['onednn']}" if "onednn" in ran_on else ""
        log.info("Precision %s (train.precision=%s)%s",
                 precision.value, typed.train.precision.value, onednn)  # fmt: skip
        model = models.build_model(typed.model)
        train.compile_model(
            model, typed.train, train.train_samples(len(prepared.x_train), typed.train)
        )
        callbacks = [tracking.epoch_metrics_callback(resumed=resume is not None),
                     outage.server_watch()]  # fmt: skip
        if trial is not None:  # last: the pruned epoch is logged first
            callbacks.append(search_trial.pruning_callback(trial))
        fitted = train.fit(model, prepared, typed.train, callbacks, checkpoint)
        outage.wait_if_away()
        if fitted.resumed_from:
            tracking.log_missing_epochs(fitted.history, fitted.resumed_from)
        scores, probabilities = train.evaluate(model, prepared, typed.train.test_time_augment)
        metrics = {**scores, "fit_seconds": fitted.seconds}
        plain = scores.get("test_accuracy_plain")
        plain = "" if plain is None else f" (test-time augmented; without: {plain:.4f})"
        log.info(
            "Done: test_accuracy=%.4f%s test_loss=%.4f fit %.1fs. Run: %s", scores["test_accuracy"],
            plain, scores["test_loss"], fitted.seconds, tracking.run_link(run),
        )  # fmt: skip
        trained = outcome.Outcome(
            metrics=metrics,
            history=fitted.history,
            sample_images=mnist.x_train[:25],
            sample_labels=mnist.y_train[:25],
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
                checkpoint.remove()

        if background:
            tracking.finish_in_background(run, finish)
        else:
            outcome.log_outcome(run_id, trained)
    if checkpoint is not None and not background:
        checkpoint.remove()  # the run is FINISHED: nothing left to resume
    return TrainedRun(run.info.run_id, fitted.history, metrics, model)


def read_text(path: Path | None) -> str | None:
    try:
        return path.read_text() if path is not None else None
    except OSError:
        return None


def command() -> None:
    """`python -m mnist_exp.run` and the `mnist-exp-run` command."""
    # Before Hydra starts: with a parallel launcher this process only waits for its workers, and
    # a SIGTERM that killed it outright would leave the sweep RUNNING and its workers training.
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        main()
    except KeyboardInterrupt as interrupt:
        # The run in progress has already been recorded KILLED, with the reason in its error.txt
        # (and the sweep's parent run is ended at exit): one line says so, where Python would
        # print the stack of whatever TensorFlow op the signal happened to land in.
        by = signal.Signals.__members__.get(str(interrupt), signal.SIGINT)  # "" for Ctrl-C
        print(f"Interrupted by {by.name}; a run in progress is recorded as KILLED", file=sys.stderr)
        sys.exit(128 + by)
    except SystemExit as done:
        from mnist_exp import outage

        if outage.has_given_up():
            outage.exit_now(done.code if isinstance(done.code, int) else 1)
        raise


if __name__ == "__main__":
    command()
