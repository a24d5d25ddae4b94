"""One run in MLflow: starting and ending it, what it logs while and after it trains.

mlflow is imported inside functions: a config error should be reported without paying for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mnist_exp import background
from mnist_exp.identity import config_hash, git_state, hyperparameters
from mnist_exp.orphans import this_process
from mnist_exp.store import is_local_store

log = logging.getLogger(__name__)

# How a multirun hands its parent run to the jobs: environment variables reach launcher
# subprocesses too, not only jobs run in this process.
PARENT_RUN_ENV = "MNIST_EXP_PARENT_RUN_ID"
# MLflow's tag that makes a run a child of a sweep's parent run.
PARENT_TAG = "mlflow.parentRunId"

# A parent run's tag per skipped job: skipped.<run id that had already finished it> = job name.
SKIPPED_TAG = "skipped."
# The other side of it, on the finished run: in_sweep.<parent run id> = "skipped". MLflow keeps
# one parent per run, so a run that a later sweep skipped is that sweep's by this tag.
IN_SWEEP_TAG = "in_sweep."
# On a run that a later process resumed from its checkpoint: from which epoch, after what.
RESUMED_TAG = "resumed"
NOTE_TAG = "mlflow.note.content"  # a run's description in the MLflow UI

# Per run: the counts compare.py reads back.
CONFUSION_MATRIX_FILE = "confusion_matrix.json"

# Work that finishes a run on the background worker, by run id (see finish_in_background).
_finishing: dict[str, Callable[[], None]] = {}


def children_filter(parent_run_id: str) -> str:
    """The search_runs filter for a sweep's child runs (not the runs it skipped: sweep_runs)."""
    return f"tags.{PARENT_TAG} = '{parent_run_id}'"


def in_sweep_filter(parent_run_id: str) -> str:
    """The search_runs filter for the finished runs a sweep skipped rather than train again."""
    return f"tags.`{IN_SWEEP_TAG}{parent_run_id}` = 'skipped'"


def sweep_runs(client: Any, experiment_ids: list[str], parent_run_id: str) -> tuple[list, list]:
    """A sweep's child runs (oldest first), and the finished runs of earlier sweeps it skipped.

    Two searches: MLflow's filter language has no OR.
    """
    found = [
        client.search_runs(experiment_ids, which, order_by=["attributes.start_time ASC"],
                           max_results=10_000)
        for which in (children_filter(parent_run_id), in_sweep_filter(parent_run_id))
    ]  # fmt: skip
    return list(found[0]), list(found[1])


@contextlib.contextmanager
def job_run(
    config: dict[str, Any],
    run_name: str,
    system_metrics_seconds: float | None = None,
    extra_tags: dict[str, str] | None = None,
    resume: Any | None = None,
    epochs_done: int = 0,
) -> Iterator[Any]:
    """A child run of the current sweep (or a top-level run), ended FINISHED, FAILED or KILLED.

    `resume` is an earlier KILLED or FAILED run of this config to continue after `epochs_done`
    epochs, back to RUNNING: it joins the current sweep, if any. A failure leaves its traceback
    as error.txt in the run, so nothing is lost with the process. A run given to
    `finish_in_background` is ended by the background worker instead. With
    `system_metrics_seconds`, CPU, memory, disk and network use are sampled that often
    (MLflow's system metrics, through psutil) and charted next to the training curves. A trial
    the search's pruner stopped ends KILLED with its pruned_at_epoch tag, its curves kept.
    """
    import mlflow

    from mnist_exp.search_trial import PrunedTrial

    if system_metrics_seconds:
        mlflow.set_system_metrics_sampling_interval(system_metrics_seconds)
        # Its four INFO lines per run (started, no GPU, stopping, stopped) say nothing to act on.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    parent = os.environ.get(PARENT_RUN_ENV) or None
    tags = {**this_process(), **git_state(), **(extra_tags or {})}
    system_metrics = bool(system_metrics_seconds)
    if resume is None:
        tags["config_hash"] = config_hash(config)
        run = mlflow.start_run(run_name=run_name, parent_run_id=parent, tags=tags,
                               log_system_metrics=system_metrics)  # fmt: skip
    else:
        note = (f"Resumed after epoch {epochs_done} (it had ended {resume.info.status}) by "
                f"process {tags['pid']} on {tags['host']}")  # fmt: skip
        tags[RESUMED_TAG] = note
        if resume.data.tags.get(NOTE_TAG):  # the description says why it had stopped
            tags[NOTE_TAG] = f"{resume.data.tags[NOTE_TAG]}\n\n{note}."
        if parent:
            tags[PARENT_TAG] = parent
        run = mlflow.start_run(run_id=resume.info.run_id, tags=tags,
                               log_system_metrics=system_metrics)  # fmt: skip
    try:
        if resume is None:
            mlflow.log_params(hyperparameters(config))
        mlflow.log_text(OmegaConf.to_yaml(config), "config.yaml")
        yield run
    except PrunedTrial as pruned:
        _finishing.pop(run.info.run_id, None)
        mlflow.set_tags(pruned.run_tags)
        mlflow.end_run("KILLED")
        raise
    except KeyboardInterrupt:
        _finishing.pop(run.info.run_id, None)
        # Never swallow the interrupt, even if the store cannot take the record right now (a
        # SQLite store still locked by the write the signal cut short): the sweep's parent run
        # then ends this run KILLED on its way out.
        with contextlib.suppress(Exception):
            mlflow.log_text("Interrupted (Ctrl-C / KeyboardInterrupt)\n", "error.txt")
            mlflow.end_run("KILLED")
        raise
    except BaseException as err:
        _finishing.pop(run.info.run_id, None)
        from mnist_exp import outage

        if lost := outage.lost_server(err):
            # Nothing can be recorded there now; the run is ended once the server is back.
            raise lost from None
        mlflow.log_text(traceback.format_exc(), "error.txt")
        mlflow.end_run("FAILED")
        raise
    finish = _finishing.pop(run.info.run_id, None)
    if finish is None:
        mlflow.end_run("FINISHED")
        return
    # Only this thread lets go of the run (and stops its system metrics): it stays RUNNING until
    # the worker has logged the rest and ends it. Handed over after, so that end comes last.
    mlflow.end_run("RUNNING")
    background.submit(finish)


def finish_in_background(run: Any, finish: Callable[[], None]) -> None:
    """Let the background worker call `finish` (which logs the rest of `run` and ends it) once
    the job_run block has ended without an error, while this thread goes on to the next job."""
    _finishing[run.info.run_id] = finish


def log_datasets(prepared: Any, cache_dir: str | Path) -> None:
    """The training and test images a run used, as MLflow dataset inputs named `mnist`: the
    runs table's Dataset column and its filters. Their digests come from the canonical sha256s
    and the subset's size (data.subset_digest), so nothing is hashed again per run."""
    import mlflow

    from mnist_exp.data import CACHE_FILE, subset_digest

    source = str(Path(cache_dir) / CACHE_FILE)
    for context, split, x, y in (("training", "train", prepared.x_train, prepared.y_train),
                                 ("test", "test", prepared.x_test, prepared.y_test)):  # fmt: skip
        with warnings.catch_warnings():
            # MLflow registers its local-file source for both "" and "file:" and warns, every
            # time, that a path matches two sources: they are one and the same class.
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            dataset = mlflow.data.from_numpy(
                x, targets=y, source=source, name="mnist", digest=subset_digest(split, len(x))
            )
        _log_input_once_created(dataset, context)


def _log_input_once_created(dataset: Any, context: str) -> None:
    """mlflow.log_input, tried again once when a parallel job created the same dataset first:
    MLflow's SQL store checks for the dataset and inserts it without a lock, so two jobs
    starting together (a Ray or joblib sweep) can both insert, and the second one fails on
    the datasets table's unique key. The second try finds the row and links to it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.log_input(dataset, context=context)
    except MlflowException as error:
        if "UNIQUE constraint" not in str(error) and "duplicate key" not in str(error):
            raise
        mlflow.log_input(dataset, context=context)


def finished_run_like(config: dict[str, Any]) -> Any | None:
    """A FINISHED run of the current experiment with this config's hash, if there is one."""
    import mlflow

    found = mlflow.search_runs(
        filter_string=f"tags.config_hash = '{config_hash(config)}' and "
        "attributes.status = 'FINISHED'",
        max_results=1,
        output_format="list",
    )
    return found[0] if found else None


def tag_run(tags: dict[str, str]) -> None:
    """Tags on the active run: what this machine resolved (precision, oneDNN), not config."""
    import mlflow

    mlflow.set_tags(tags)


def latest_run_like(config: dict[str, Any]) -> Any | None:
    """The newest run of the current experiment with this config's hash, whatever its status."""
    import mlflow

    found = mlflow.search_runs(
        filter_string=f"tags.config_hash = '{config_hash(config)}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return found[0] if found else None


def log_missing_epochs(history: dict[str, list[float]], epochs: int) -> int:
    """Log the first `epochs` epochs of `history` that the active run lacks (a kill can come
    after an epoch is checkpointed and before its metrics reach MLflow); how many were."""
    import mlflow
    from mlflow import MlflowClient

    run_id = mlflow.active_run().info.run_id
    logged = {m.step for m in MlflowClient().get_metric_history(run_id, "loss")}
    missing = [epoch for epoch in range(epochs) if epoch not in logged]
    for epoch in missing:
        mlflow.log_metrics({k: v[epoch] for k, v in history.items() if epoch < len(v)}, step=epoch)
    return len(missing)


def note_skipped(run_name: str, finished_run_id: str) -> None:
    """Tell the sweep's parent run that a job was skipped, for its end-of-sweep summary."""
    from mlflow import MlflowClient

    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:
        client = MlflowClient()
        client.set_tag(parent, f"{SKIPPED_TAG}{finished_run_id}", run_name)
        client.set_tag(finished_run_id, f"{IN_SWEEP_TAG}{parent}", "skipped")


def epoch_metrics_callback(resumed: bool = False):
    """MLflow's Keras callback: per-epoch loss/accuracy/val_* with step=epoch, model_summary.txt.

    Keras numbers a resumed fit's epochs from where it resumed, so the steps continue.
    """
    import mlflow.keras

    local = is_local_store(mlflow.get_tracking_uri())

    class EpochMetrics(mlflow.keras.MlflowCallback):
        def on_train_begin(self, logs=None):
            # A resumed run has its optimizer params and summary; the learning rate restored
            # from the checkpoint would be a changed param, which MLflow refuses.
            if not resumed:
                super().on_train_begin(logs)

        # Keras runs validation through evaluate(), which would log every epoch's val metrics a
        # second time as `validation_*` at step 0; fit's own val_* already carry them per epoch.
        def on_test_end(self, logs=None):
            pass

        # Into a local store synchronously, where MLflow's is async: ending a run shuts MLflow's
        # async queue down, which waited ~0.5 s per job, and from the background worker would
        # race with the next job's logging; one small batch per epoch costs milliseconds. To a
        # server asynchronously, so that training goes on while an outage is waited out
        # (outage.py) instead of stalling in each request's retries.
        def on_epoch_end(self, epoch, logs=None):
            if logs:
                mlflow.log_metrics(logs, step=epoch, synchronous=local)

    return EpochMetrics()


def load_confusion_matrix(run_id: str) -> Any | None:
    """A run's counts[true, predicted], or None for a run logged without them."""
    import mlflow
    import numpy as np

    try:
        logged = mlflow.artifacts.load_dict(f"runs:/{run_id}/{CONFUSION_MATRIX_FILE}")
    except (mlflow.exceptions.MlflowException, OSError):
        return None
    return np.array(logged["counts"])


def log_comparison(parent_run_id: str, directory: Path, files: tuple[str, ...]) -> None:
    """A sweep's comparison, into its parent run's artifacts under comparison/."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for name in files:
        client.log_artifact(parent_run_id, str(directory / name), "comparison")


def run_link(run: Any) -> str:
    import mlflow

    uri = mlflow.get_tracking_uri()
    local = is_local_store(uri)
    base = "http://127.0.0.1:5000" if local else uri.rstrip("/")
    # Without workflowType, MLflow 3's UI opens in its GenAI (traces) mode.
    link = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    link += "?workflowType=machine_learning"
    return link + (" (start the UI with `make ui`)" if local else "")
