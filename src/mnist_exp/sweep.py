"""Sweeps: one MLflow parent run per Hydra multirun, and what each job of a sweep does.

A job skips a config that already has a FINISHED run, keeps a failure to its own FAILED run so
the others go on, and hands the sweeper its validation accuracy (never the test accuracy, which
must stay unseen by any search). The parent run ends with the sweep's outcome.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_exp import background, data, orphans, store
from mnist_exp.config import Config, ConfigError
from mnist_exp.identity import git_state
from mnist_exp.outage import TrackingServerLost, has_given_up
from mnist_exp.tracking import PARENT_RUN_ENV, sweep_runs

log = logging.getLogger(__name__)

# What a sweeper maximises; the test set never decides anything in a search.
OBJECTIVE = "val_accuracy"

# A child run the search's pruner stopped early: KILLED in MLflow, but a result, not a loss.
PRUNED = "PRUNED"
# The end-of-sweep summary, every job with its status, kept with the sweep's parent run.
SUMMARY = "sweep_summary.txt"


def check_sweep_job(cfg: Config) -> None:
    """A sweep's jobs are compared on validation accuracy, so each must hold some data out."""
    if not cfg.train.validation_split:
        raise ConfigError(
            f"train.validation_split={cfg.train.validation_split}: a sweep compares its jobs "
            f"on {OBJECTIVE}, so it needs a validation split > 0 (the test set must not choose)"
        )


def check_one_backend(backends: set[str]) -> None:
    """Keras loads one backend per process, and a sweep's jobs share processes (Hydra's basic
    launcher runs them all in one; joblib and Ray workers run several each), so every job of a
    sweep must ask for the same train.backend."""
    if len(backends) > 1:
        raise ConfigError(
            f"train.backend: this sweep mixes {' and '.join(sorted(backends))}, but Keras "
            "loads one backend per process and the jobs of a sweep share theirs; sweep each "
            "backend separately (e.g. the same command once with train.backend=jax)"
        )


def validate_sweep_job(loader: Any, sweep_config: DictConfig, overrides: list[str]) -> None:
    """Compose one job of a sweep as its launcher will, and check it as `run` will."""
    from mnist_exp.config import validate

    job_cfg = loader.load_sweep_config(sweep_config, list(overrides))
    try:
        check_sweep_job(validate(job_cfg))
    except ConfigError as err:
        raise ConfigError(f"Sweep job [{' '.join(overrides)}]: {err}") from None


def run_job(cfg: Config, config: dict[str, Any], name: str, train: Callable[[], dict]) -> Any:
    """One job of a sweep: skipped if already done, a failure kept to its own run; the objective
    (NaN for a failure), or the PrunedTrial when a search's pruner stopped it.

    `train` runs the job and returns its per-epoch history.
    """
    from mnist_exp import tracking

    check_sweep_job(cfg)
    done = None if cfg.tracking.rerun else tracking.finished_run_like(config)
    if done is not None:
        log.info("Skipping '%s': run %s already finished it (tracking.rerun=true trains it again)",
                 name, done.info.run_id)  # fmt: skip
        tracking.note_skipped(name, done.info.run_id)
        if OBJECTIVE not in done.data.metrics:
            log.warning("Run %s has no %s; the sweeper gets NaN", done.info.run_id, OBJECTIVE)
        return done.data.metrics.get(OBJECTIVE, float("nan"))
    from mnist_exp.search_trial import PrunedTrial

    try:
        return train()[OBJECTIVE][-1]
    except PrunedTrial as pruned:
        # Returned, not raised: Hydra would log a pruned trial as a job error. The search's
        # sweeper tells its study; the run is already recorded.
        return pruned
    except TrackingServerLost:
        raise  # every later job would wait for the server in vain
    except Exception as err:
        log.error("Job '%s' failed, recorded as a FAILED run; the sweep goes on: %s: %s",
                  name, type(err).__name__, err)  # fmt: skip
        return float("nan")


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
    from mnist_exp.search_trial import PRUNED_TAG

    return PRUNED if PRUNED_TAG in run.data.tags else run.info.status


class SweepParentRun(Callback):
    """Hydra callback: one MLflow parent run per multirun, ended with the sweep's outcome."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        launcher = config.hydra.runtime.choices.get("hydra/launcher", "basic")
        try:
            store.check_store_takes_parallel_jobs(launcher, config.tracking.uri)
            data.check_cache_dir(config.data.cache_dir)
            experiment_id = store.use_experiment(config.tracking)
        except CompactHydraException as err:
            # Hydra turns a callback's exceptions into warnings and sweeps on regardless; an
            # exit is what stops it, before any job runs or any run is recorded.
            print(err, file=sys.stderr)
            sys.exit(1)
        orphans.end_orphans_in_experiment(experiment_id)
        overrides = " ".join(config.hydra.overrides.task)
        sweep_params = config.hydra.sweeper.get("params") or {}
        swept = " ".join(f"{k}={v}" for k, v in sweep_params.items())
        run = MlflowClient().create_run(
            experiment_id,
            run_name=" ".join(part for part in ("sweep", swept, overrides) if part),
            tags={
                "sweep_dir": str(config.hydra.sweep.dir),
                **orphans.this_process(),
                **git_state(),
            },  # fmt: skip
        )
        self.run_id = run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.run_id
        # Hydra skips on_multirun_end when a job raises or the user presses Ctrl-C.
        atexit.register(self._end, interrupted=True)
        log.info("Sweep parent run %s", self.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._end(interrupted=False) == "FAILED":
            # The jobs caught their own errors so the sweep could go on; the exit code says so.
            sys.exit(1)

    def _end(self, interrupted: bool) -> str | None:
        if self.run_id is None:
            return None
        if has_given_up():
            return None  # the server is gone: the next command ends this run once it is back
        from mlflow import MlflowClient

        # Jobs that finished training may still be logging; their runs end when that is done.
        background.flush()
        client = MlflowClient()
        parent = client.get_run(self.run_id)
        children, earlier = sweep_runs(client, [parent.info.experiment_id], self.run_id)
        outcome = sweep_outcome(
            {child.info.run_id: child_status(child) for child in children},
            len(earlier),
            interrupted,
        )
        if outcome.status is None:
            # Stopped before any job started (e.g. a bad override): the parent records nothing.
            client.delete_run(self.run_id)
            log.info("Sweep parent run %s deleted: no job ran", self.run_id)
        else:
            for child in children:
                if child_status(child) != outcome.ended[child.info.run_id]:
                    client.set_terminated(child.info.run_id, outcome.ended[child.info.run_id])
            summary = self._summarise(outcome, children, earlier)
            client.log_text(self.run_id, summary, SUMMARY)
            client.set_terminated(self.run_id, outcome.status)
        os.environ.pop(PARENT_RUN_ENV, None)
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
