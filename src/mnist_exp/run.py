"""The Hydra entry point: compose and validate the config, prepare the run, and train it
(mnist_exp.tracked_run), alone or as one job of a sweep.

python -m mnist_exp.run                              # the tutorial's baseline
python -m mnist_exp.run model=cnn                    # the convolutional network
python -m mnist_exp.run -m model.hidden=64,128,256   # a sweep: one parent, three child runs
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from mnist_exp import interrupts, tracked_run
from mnist_exp.composition import CONF_DIR
from mnist_exp.config import validate
from mnist_exp.errors import UserError
from mnist_exp.identity import plain_dict, run_name
from mnist_exp.sweeps import dry_run, job
from mnist_exp.sweeps.launchers import (
    cores_per_job,
    jobs_side_by_side,
    process_outlives_job,
    runs_in_this_process,
)
from mnist_exp.sweeps.search import confirm
from mnist_exp.sweeps.search.trial import job_trial
from mnist_exp.tracking import outage
from mnist_exp.tracking.full_disk import DiskFull, disk_full
from mnist_exp.tracking.uris import is_local_store


# An absolute path: Hydra would read a relative one as a package path when this module is not
# __main__ (the mnist-exp-run command, a notebook).
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        return run_or_sweep_job(cfg)
    except Exception as err:
        # A full disk, whatever reported it; the run's error.txt keeps the traceback if it fits.
        hydra_cfg = HydraConfig.get()
        where = cfg.tracking
        places = {"tracking.uri": where.uri, "tracking.artifact_location": where.artifact_location,
                  "tracking.checkpoint_dir": where.checkpoint_dir,
                  "hydra.runtime.output_dir": hydra_cfg.runtime.output_dir}  # fmt: skip
        problem = err if isinstance(err, UserError) else disk_full(err, places)
        if problem is None:
            raise
        in_this_process = runs_in_this_process(hydra_cfg.launcher)
        if isinstance(problem, DiskFull) and hydra_cfg.mode == RunMode.MULTIRUN and in_this_process:
            # Hydra's launcher would go on to the next job, whose config it cannot write either
            # (a traceback): the sweep stops here, its parent run ended on the way out.
            print(problem, file=sys.stderr)
            sys.exit(1)
        # Hydra prints its own CompactHydraException as one message, with no traceback.
        raise CompactHydraException(str(problem)) from err


def run_or_sweep_job(cfg: DictConfig) -> float | None:
    typed = validate(cfg)  # before anything slow: a bad override costs nothing
    hydra_cfg = HydraConfig.get()
    threads = typed.train.threads or cores_per_job(hydra_cfg.launcher)
    # Also in a launcher's worker process, where this function is all that runs of this module.
    if threading.current_thread() is threading.main_thread():
        interrupts.handle()
    config = plain_dict(cfg)
    name = run_name(typed, list(hydra_cfg.overrides.task))
    # Hydra's log of this job, so the run keeps its console output too.
    log_path = Path(hydra_cfg.runtime.output_dir) / f"{hydra_cfg.job.name}.log"
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if typed.dry_run:
        return dry_run.report(typed, config, name, hydra_cfg.job.num if multirun else None)
    tracked_run.prepare(typed, threads)
    if not multirun:
        tracked_run.train_and_log(typed, config, name, threads, log_path)
        return None
    trial = job_trial(hydra_cfg.sweeper)  # None unless a search (hydra/sweeper=search) runs it
    tags = confirm.job_tags(hydra_cfg.sweeper)  # a search's re-run of a trial on a new seed
    # Not through a tracking server: its outages are waited out by the job (tracking.outage),
    # which the background worker does not do yet.
    background = process_outlives_job(hydra_cfg.launcher) and is_local_store(typed.tracking.uri)

    def train() -> dict[str, list[float]]:
        return tracked_run.train_and_log(
            typed, config, name, threads, log_path, background, trial, tags
        ).history

    side_by_side = jobs_side_by_side(hydra_cfg.launcher)
    return job.run_job(typed, config, name, train, hydra_cfg.job.num, side_by_side)


def command() -> None:
    """`python -m mnist_exp.run` and the `mnist-exp-run` command."""
    # Before Hydra starts: with a parallel launcher this process only waits for its workers, and
    # a SIGTERM that killed it outright would leave the sweep RUNNING and its workers training.
    interrupts.handle()
    # A log file on a disk that has filled up: its records are lost, not each one printed with a
    # traceback ("--- Logging error ---"); the console still shows them, and the error says why.
    logging.raiseExceptions = False
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
        if outage.has_given_up():
            outage.exit_now(done.code if isinstance(done.code, int) else 1)
        raise


if __name__ == "__main__":
    command()
