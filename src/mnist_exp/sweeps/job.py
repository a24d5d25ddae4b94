"""What each job of a sweep does, and what every job must be before the first one trains.

A job skips a config that already has a FINISHED run, keeps a failure to its own FAILED run so
the others go on, and hands the sweeper its validation accuracy (never the test accuracy, which
must stay unseen by any search). Both sweepers check every job with `validate_sweep_job`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from mnist_exp import interrupts
from mnist_exp.config import Config, ConfigError, validate
from mnist_exp.errors import PrunedTrial
from mnist_exp.identity import SEED
from mnist_exp.names import OBJECTIVE
from mnist_exp.sweeps import progress
from mnist_exp.tracking import runs
from mnist_exp.tracking.full_disk import disk_full
from mnist_exp.tracking.outage import TrackingServerLost
from mnist_exp.tracking.resume_lock import RunBusy

log = logging.getLogger(__name__)


class InvalidSweep(ConfigError, CompactHydraException):
    """A job of the sweep would fail: found by the sweeper before any job runs (and so raised
    through Hydra, which prints a CompactHydraException as one message)."""


def check_sweep_job(cfg: Config) -> None:
    """A sweep's jobs are compared on validation accuracy, so each must hold some data out."""
    if not cfg.train.validation_split:
        raise InvalidSweep(
            f"train.validation_split={cfg.train.validation_split}: a sweep compares its jobs "
            f"on {OBJECTIVE}, so it needs a validation split > 0 (the test set must not choose)"
        )


def check_one_backend(backends: set[str]) -> None:
    """Keras loads one backend per process, and a sweep's jobs share processes (Hydra's basic
    launcher runs them all in one; joblib and Ray workers run several each), so every job of a
    sweep must train on the same backend; the together launcher gives each backend its own."""
    if len(backends) > 1:
        raise InvalidSweep(
            f"train.backend: this sweep's jobs train on {' and '.join(sorted(backends))} "
            "(train.backend=auto picks JAX for dense models and TensorFlow for the CNN), but "
            "Keras loads one backend per process and the jobs of this launcher share theirs; "
            "add hydra/launcher=together, which runs each backend in its own processes, or "
            "set one train.backend for the whole sweep"
        )


def one_backend_for_search(fixed: list[str], chooses_family: bool) -> list[str]:
    """A search's fixed overrides, with train.backend=tensorflow when the search may choose the
    model family and the backend is left to auto: its trials share processes, and auto would
    pick JAX for a dense trial and TensorFlow for a CNN one. TensorFlow trains both; the choice
    is the same on every run of the search, so its trials keep their config hashes."""
    if not chooses_family or any(o.lstrip("+~").startswith("train.backend=") for o in fixed):
        return fixed
    log.info(
        "train.backend=auto: this search may choose the model family, and its trials share "
        "processes, so every trial trains on tensorflow (set train.backend to choose)"
    )
    return [*fixed, "train.backend=tensorflow"]


def validate_sweep_job(
    loader: Any, sweep_config: DictConfig, overrides: Sequence[str]
) -> tuple[DictConfig, Config]:
    """Compose one job of a sweep as its launcher will, and check it as `run` will; the
    composed config and its typed form."""
    job_cfg = loader.load_sweep_config(sweep_config, list(overrides))
    try:
        typed = validate(job_cfg)
        check_sweep_job(typed)
    except ConfigError as err:
        raise InvalidSweep(f"Sweep job [{' '.join(overrides)}]: {err}") from None
    return job_cfg, typed


def validate_sweep(
    loader: Any, sweep_config: DictConfig, batch: Iterable[Sequence[str]]
) -> dict[tuple[str, ...], DictConfig]:
    """Every job of a batch validated, and all on one backend unless the launcher gives each
    backend its processes; each job's composed config."""
    composed, backends = {}, set()
    for overrides in batch:
        job_cfg, typed = validate_sweep_job(loader, sweep_config, overrides)
        composed[tuple(overrides)] = job_cfg
        backends.add(typed.train.backend.value)
    if not sweep_config.hydra.launcher.get("_target_", "").endswith(".TogetherLauncher"):
        check_one_backend(backends)
    return composed


def with_seeds(arguments: list[str], params: dict | None, seeds: int | None) -> list[str]:
    """The sweep's overrides with `seed=range(1, seeds + 1)` added, unless seed is already
    given (on the command line or in the preset's sweeper params)."""
    given = [*arguments, *(f"{key}={value}" for key, value in (params or {}).items())]
    if not seeds or any(o.lstrip("+~").partition("=")[0] == SEED for o in given):
        return list(arguments)
    return [*arguments, f"{SEED}=range(1,{seeds + 1})"]


def run_job(
    cfg: Config,
    config: dict[str, Any],
    name: str,
    train: Callable[[], dict],
    position: int = 0,
    side_by_side: int = 1,
) -> Any:
    """One job of a sweep: skipped if already done, a failure kept to its own run; the objective
    (NaN for a failure), or the PrunedTrial when a search's pruner stopped it. Then a line of
    the sweep's progress.

    `train` runs the job and returns its per-epoch history; `position` is Hydra's job number;
    `side_by_side`, how many of the sweep's jobs run at once.
    """
    interrupts.raise_if_received()  # one a library swallowed while the last job was finishing
    check_sweep_job(cfg)
    start = time.monotonic()
    done = None if cfg.tracking.rerun else runs.finished_run_like(config)
    if done is not None:
        log.info("Skipping '%s': run %s already finished it (tracking.rerun=true trains it again)",
                 name, done.info.run_id)  # fmt: skip
        runs.note_skipped(done)
        if OBJECTIVE not in done.data.metrics:
            log.warning("Run %s has no %s; the sweeper gets NaN", done.info.run_id, OBJECTIVE)
        value = done.data.metrics.get(OBJECTIVE, float("nan"))
        progress.job_done(position, name, value, 0, 0, skipped=done.info.run_id)
        return value
    value, fit_seconds = trained(name, train)
    seconds = time.monotonic() - start
    progress.job_done(
        position, name, value, seconds, fit_seconds, skipped=None, side_by_side=side_by_side
    )
    return value


def trained(name: str, train: Callable[[], dict]) -> tuple[Any, float]:
    """`train`'s last validation accuracy, or what stopped it (a pruned trial, NaN for a
    failure, which its run keeps); and the seconds its epochs took (0 when it did not finish)."""
    try:
        history = train()
        return history[OBJECTIVE][-1], sum(history.get("epoch_seconds", []))
    except PrunedTrial as pruned:
        # Returned, not raised: Hydra would log a pruned trial as a job error. The search's
        # sweeper tells its study; the run is already recorded.
        return pruned, 0.0
    except TrackingServerLost:
        raise  # every later job would wait for the server in vain
    except RunBusy as busy:
        log.error("Job '%s' not run: %s", name, busy)  # nothing recorded: it is the other's
        return float("nan"), 0.0
    except Exception as err:
        if disk_full(err) is not None:
            raise  # every later job would fail the same way; the command names the disk
        log.error("Job '%s' failed, recorded as a FAILED run; the sweep goes on: %s: %s",
                  name, type(err).__name__, err)  # fmt: skip
        return float("nan"), 0.0
