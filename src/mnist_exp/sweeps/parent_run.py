"""A sweep's parent run: one per Hydra multirun (a Hydra callback), ended with the sweep's
outcome from its children's, and its summary of every job."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_exp.errors import UserError
from mnist_exp.identity import git_state, is_hyperparameter
from mnist_exp.names import (
    PARENT_RUN_ENV,
    PRUNED,
    PRUNED_TAG,
    SKIPPED_TAG,
    SUMMARY_FILE,
    SWEEP_KEY_TAG,
)
from mnist_exp.sweeps import progress
from mnist_exp.tracking import (
    background,
    credentials,
    full_disk,
    orphans,
    queries,
    store,
    store_checks,
)
from mnist_exp.tracking.outage import has_given_up
from mnist_exp.tracking.queries import sweep_runs
from mnist_exp.training.mnist import check_cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepOutcome:
    status: str | None  # FINISHED, FAILED or KILLED; None when no job ran at all
    ended: dict[str, str]  # each child run's final status (or PRUNED), by run id


def sweep_outcome(children: dict[str, str], skipped: int, interrupted: bool) -> SweepOutcome:
    """The sweep's status from its children's (run id -> status, or PRUNED for a run the search
    stopped early, which is a result like FINISHED). A child still RUNNING lost its process (a
    launcher stopped its worker, or the OS killed it): it ends KILLED if the sweep was
    interrupted, FAILED otherwise, and never stays RUNNING."""
    if not children and not skipped:
        return SweepOutcome(None, {})
    lost = "KILLED" if interrupted else "FAILED"
    ended = {run_id: lost if s == "RUNNING" else s for run_id, s in children.items()}
    if "FAILED" in ended.values():
        status = "FAILED"
    elif interrupted or "KILLED" in ended.values():
        status = "KILLED"
    else:
        status = "FINISHED"
    return SweepOutcome(status, ended)


def child_status(run: Any) -> str:
    """A child run's status, PRUNED for one the search's pruner stopped."""
    return PRUNED if PRUNED_TAG in run.data.tags else run.info.status


@contextlib.contextmanager
def refusal_exits(uri: str | None = None) -> Iterator[None]:
    """Hydra turns a callback's exceptions into warnings and sweeps on regardless; an exit is
    what stops it, before any job runs or any run is recorded. With the store's `uri`, a full
    disk under it is one of those refusals too."""
    try:
        yield
    except Exception as err:
        if not isinstance(err, UserError) and uri is not None:
            err = full_disk.disk_full(err, uri) or err
        if not isinstance(err, UserError):
            raise
        print(err, file=sys.stderr)
        sys.exit(1)


class SweepParentRun(Callback):
    """Hydra callback: one MLflow parent run per multirun, ended with the sweep's outcome."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.was: str | None = None  # a continued parent's status before this sweep
        self.started_ms = 0  # when this sweep began, in MLflow's milliseconds

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        if config.get("dry_run"):
            log.info("Dry run: every job is composed and validated; nothing is recorded or trained")
            return
        launcher = config.hydra.runtime.choices.get("hydra/launcher", "basic")
        full_disk.quiet_mlflow_reports()
        with refusal_exits(config.tracking.uri):
            store_checks.check_store_takes_parallel_jobs(launcher, config.tracking.uri)
            check_cache_dir(config.data.cache_dir)
            experiment_id = store.use_experiment(config.tracking)
        orphans.end_orphans_in_experiment(experiment_id)
        client = MlflowClient()
        key = sweep_key(config)
        tags = {"sweep_dir": str(config.hydra.sweep.dir), **orphans.this_process(), **git_state()}
        earlier = queries.sweep_parent(client, experiment_id, SWEEP_KEY_TAG, key)
        if earlier is not None:
            # The same sweep again: its jobs stay under one parent run, as the UI shows them.
            self.run_id, self.was = earlier.info.run_id, earlier.info.status
            with refusal_exits(), credentials.permission_needed():
                client.update_run(self.run_id, status="RUNNING")
            for name in [t for t in earlier.data.tags if t.startswith(SKIPPED_TAG)]:
                client.delete_tag(self.run_id, name)  # the skipped of this time, not of the last
            for name, value in tags.items():
                client.set_tag(self.run_id, name, value)
            how = f" (continued: the same sweep, last {self.was})"
        else:
            overrides = " ".join(config.hydra.overrides.task)
            sweep_params = config.hydra.sweeper.get("params") or {}
            swept = " ".join(f"{k}={v}" for k, v in sweep_params.items())
            with refusal_exits(), credentials.permission_needed():
                run = client.create_run(
                    experiment_id,
                    run_name=" ".join(part for part in ("sweep", swept, overrides) if part),
                    tags={**tags, SWEEP_KEY_TAG: key},
                )
            self.run_id, self.was, how = run.info.run_id, None, ""
        os.environ[PARENT_RUN_ENV] = self.run_id
        self.started_ms = int(time.time() * 1000)
        # Hydra skips on_multirun_end when a job raises or the user presses Ctrl-C.
        atexit.register(self._end, interrupted=True)
        log.info("Sweep parent run %s%s", self.run_id, how)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._end(interrupted=False) == "FAILED":
            # The jobs caught their own errors so the sweep could go on; the exit code says so.
            sys.exit(1)

    def _end(self, interrupted: bool) -> str | None:
        if self.run_id is None:
            return None
        if has_given_up():
            return None  # the server is gone: the next command ends this run once it is back
        try:
            return self._end_now(interrupted)
        except Exception as err:
            # A full disk, say, that stopped the sweep: the error that did is what the user
            # reads; the next sweep ends this parent run (its process gone) and continues it.
            why = "its disk is full" if full_disk.disk_full(err) else type(err).__name__
            log.warning("Sweep parent run %s could not be ended now (%s); the same command "
                        "again ends and continues it", self.run_id, why)  # fmt: skip
            self.run_id = None
            return "FAILED"

    def _end_now(self, interrupted: bool) -> str | None:
        from mlflow import MlflowClient

        # Jobs that finished training may still be logging; their runs end when that is done.
        background.flush()
        client = MlflowClient()
        parent = client.get_run(self.run_id)
        children, linked = sweep_runs(client, [parent.info.experiment_id], self.run_id)
        # Skipped this time: already finished, by an earlier run of this sweep or of another.
        skipped_now = {t.removeprefix(SKIPPED_TAG) for t in parent.data.tags
                       if t.startswith(SKIPPED_TAG)}  # fmt: skip
        current = latest_per_config(children, self.started_ms)
        children = [run for run in current if run.info.run_id not in skipped_now]
        earlier = [run for run in [*current, *linked] if run.info.run_id in skipped_now]
        outcome = sweep_outcome(
            {child.info.run_id: child_status(child) for child in children},
            len(earlier),
            interrupted,
        )
        if outcome.status is None and self.was is not None:
            client.set_terminated(self.run_id, self.was)  # a continued sweep that ran nothing
        elif outcome.status is None:
            # Stopped before any job started (e.g. a bad override): the parent records nothing.
            client.delete_run(self.run_id)
            log.info("Sweep parent run %s deleted: no job ran", self.run_id)
        else:
            for child in children:
                if child_status(child) != outcome.ended[child.info.run_id]:
                    client.set_terminated(child.info.run_id, outcome.ended[child.info.run_id])
            summary = self._summarise(outcome, children, earlier)
            client.log_text(self.run_id, summary, SUMMARY_FILE)
            client.set_terminated(self.run_id, outcome.status)
        os.environ.pop(PARENT_RUN_ENV, None)
        progress.sweep_ended()
        self.run_id = None
        return outcome.status

    def _summarise(self, outcome: SweepOutcome, children: list, earlier: list) -> str:
        """Logs the sweep's counts and what did not finish; returns the summary of every job,
        those skipped as already finished by an earlier sweep included."""
        statuses = list(outcome.ended.values())
        pruned = statuses.count(PRUNED)
        head = (
            f"Sweep {outcome.status} (parent run {self.run_id}): {statuses.count('FINISHED')} "
            f"finished, {f'{pruned} pruned, ' if pruned else ''}{statuses.count('FAILED')} "
            f"failed, {statuses.count('KILLED')} killed, {len(earlier)} skipped"
        )
        log.info("%s", head)
        lines = [head, ""]
        for child in children:
            status = outcome.ended[child.info.run_id]
            line = f"  {status:<8} {child.info.run_id}  {child.info.run_name}"
            lines.append(line)
            if status not in ("FINISHED", PRUNED):
                log.info("%s", line)
        for run in earlier:
            line = f"  SKIPPED  {run.info.run_id}  {run.info.run_name} (already finished)"
            lines.append(line)
            log.info("%s", line)
        return "\n".join(lines) + "\n"


def sweep_key(config: DictConfig) -> str:
    """What makes two multiruns the same sweep: the experiment, the overrides that change what
    is trained (not where runs are recorded, nor a dry run) and the sweeper's settings (its
    params, seeds, search), not the launcher or how many jobs run at once."""
    overrides = sorted(o for o in config.hydra.overrides.task
                       if is_hyperparameter(o.lstrip("+~").partition("=")[0]))  # fmt: skip
    sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    for runtime in ("trial_number", "confirm_of", "n_jobs", "storage", "max_batch_size"):
        sweeper.pop(runtime, None)
    definition = {"experiment": config.tracking.experiment, "overrides": overrides,
                  "sweeper": sweeper}  # fmt: skip
    return hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()


def latest_per_config(children: list, since_ms: int) -> list:
    """A continued sweep's child runs that make its outcome, oldest first: per config, the runs
    of this time (started since `since_ms`; jobs that differ only in where data or runs live
    share a config hash), or else its newest run. Earlier tries, FAILED or KILLED and trained
    again in a run of their own, are history."""
    groups: dict[str, list] = {}
    for run in sorted(children, key=lambda r: r.info.start_time):
        groups.setdefault(run.data.tags.get("config_hash", run.info.run_id), []).append(run)
    current = []
    for runs in groups.values():
        current += [r for r in runs if r.info.start_time >= since_ms] or runs[-1:]
    return sorted(current, key=lambda r: r.info.start_time)
