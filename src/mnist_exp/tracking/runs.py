"""One run's life in MLflow: started (or resumed), ended FINISHED, FAILED or KILLED, and found
again by its config.

mlflow is imported inside functions: a config error should be reported without paying for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import OmegaConf

from mnist_exp.errors import PrunedTrial
from mnist_exp.identity import config_hash, git_state, hyperparameters, variant_id, variant_name
from mnist_exp.names import (
    IN_SWEEP_TAG,
    NOTE_TAG,
    PARENT_RUN_ENV,
    PARENT_TAG,
    RESTARTED_TAG,
    RESUMED_TAG,
    SKIPPED_TAG,
    VARIANT_NAME_TAG,
    VARIANT_TAG,
)
from mnist_exp.tracking import background, credentials, outage
from mnist_exp.tracking.full_disk import disk_full
from mnist_exp.tracking.orphans import this_process

log = logging.getLogger(__name__)

# Work that finishes a run on the background worker, by run id (see finish_in_background).
_finishing: dict[str, Callable[[], None]] = {}


@contextlib.contextmanager
def job_run(
    config: dict[str, Any],
    run_name: str,
    system_metrics_seconds: float | None = None,
    extra_tags: dict[str, str] | None = None,
    resume: Any | None = None,
    epochs_done: int = 0,
    restarted: str | None = None,
) -> Iterator[Any]:
    """A child run of the current sweep (or a top-level run), ended FINISHED, FAILED or KILLED.

    `resume` is an earlier KILLED or FAILED run of this config to continue after `epochs_done`
    epochs, back to RUNNING: it joins the current sweep, if any (`restarted`: why it trains
    again from epoch 0 instead, tagged on it). A failure leaves its traceback
    as error.txt in the run, so nothing is lost with the process. A run given to
    `finish_in_background` is ended by the background worker instead. With
    `system_metrics_seconds`, CPU, memory, disk and network use are sampled that often
    (MLflow's system metrics, through psutil) and charted next to the training curves. A trial
    the search's pruner stopped ends KILLED with its pruned_at_epoch tag, its curves kept.
    """
    import mlflow

    if system_metrics_seconds:
        mlflow.set_system_metrics_sampling_interval(system_metrics_seconds)
        # Its four INFO lines per run (started, no GPU, stopping, stopped) say nothing to act on.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    parent = os.environ.get(PARENT_RUN_ENV) or None
    tags = {**this_process(), **git_state(), **(extra_tags or {})}
    tags |= {VARIANT_TAG: variant_id(config), VARIANT_NAME_TAG: variant_name(run_name)}
    system_metrics = bool(system_metrics_seconds)
    if resume is None:
        tags["config_hash"] = config_hash(config)
        with credentials.permission_needed():
            run = mlflow.start_run(run_name=run_name, parent_run_id=parent, tags=tags,
                                   log_system_metrics=system_metrics)  # fmt: skip
    else:
        note = (f"Resumed after epoch {epochs_done} (it had ended {resume.info.status}) by "
                f"process {tags['pid']} on {tags['host']}")  # fmt: skip
        tags[RESUMED_TAG] = note
        if restarted:
            tags[RESTARTED_TAG] = restarted
            note = f"{note}. {restarted}"
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
        if lost := outage.lost_server(err):
            # Nothing can be recorded there now; the run is ended once the server is back.
            raise lost from None
        record_failure(traceback.format_exc())
        raise
    finish = _finishing.pop(run.info.run_id, None)
    if finish is None:
        mlflow.end_run("FINISHED")
        return
    # Only this thread lets go of the run (and stops its system metrics): it stays RUNNING until
    # the worker has logged the rest and ends it. Handed over after, so that end comes last.
    mlflow.end_run("RUNNING")
    background.submit(finish)


def record_failure(trace: str, run_id: str | None = None) -> None:
    """End the run FAILED with its traceback in error.txt, as far as the store and the artifacts
    can still take them: with a full disk the error.txt may not fit, and the run's end may not
    either (the next command then ends it FAILED, its process gone). The error that brought us
    here is what the user is told, not these."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = run_id or mlflow.active_run().info.run_id
    try:
        client.log_text(run_id, trace, "error.txt")
    except Exception as err:
        log.warning("Run %s: its error.txt could not be kept (%s)", run_id, why_not(err))
    try:
        if mlflow.active_run() is not None and mlflow.active_run().info.run_id == run_id:
            mlflow.end_run("FAILED")
        else:
            client.set_terminated(run_id, "FAILED")
    except Exception as err:
        log.warning("Run %s could not be ended FAILED now (%s); the next command that opens "
                    "the experiment does it", run_id, why_not(err))  # fmt: skip


def why_not(err: Exception) -> str:
    return "its disk is full" if disk_full(err) else type(err).__name__


def finish_in_background(run: Any, finish: Callable[[], None]) -> None:
    """Let the background worker call `finish` (which logs the rest of `run` and ends it) once
    the job_run block has ended without an error, while this thread goes on to the next job."""
    _finishing[run.info.run_id] = finish


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


def get_run(run_id: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient().get_run(run_id)


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


def note_skipped(finished: Any) -> None:
    """Tell the sweep's parent run that a job was skipped (`finished` had done it), for its
    end-of-sweep summary; a run of another sweep is linked to this one too."""
    from mlflow import MlflowClient

    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:
        client = MlflowClient()
        run_id = finished.info.run_id
        client.set_tag(parent, f"{SKIPPED_TAG}{run_id}", finished.info.run_name)
        if finished.data.tags.get(PARENT_TAG) != parent:  # this sweep's own child already
            client.set_tag(run_id, f"{IN_SWEEP_TAG}{parent}", "skipped")
