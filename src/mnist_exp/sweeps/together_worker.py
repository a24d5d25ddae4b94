"""A worker process of hydra/launcher=together (sweeps.together): it takes jobs from the shared
queue until the None meant for it, runs each as Hydra runs a job, and reports back to the
launching process; it stops, its run ended KILLED, when that process dies.
"""

from __future__ import annotations

# Imported only where a worker starts (sweeps.together.run_group), so its imports cost nothing to
# a command that runs no such sweep.
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import cloudpickle
import psutil
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import run_job, setup_globals
from hydra.types import HydraContext

from mnist_exp.names import SERVED_AT_ENV
from mnist_exp.sweeps import progress
from mnist_exp.tracking import background
from mnist_exp.training import backend


def work(payload: bytes, tasks: Any, results: Any, launcher: int) -> None:
    """A worker: jobs from `tasks` until the None meant for it; then its logging is finished."""
    try:
        stop_when_orphaned(launcher)
        context, task_function, state, environment, threads = cloudpickle.loads(payload)
        os.environ.update(environment)
        # Keras may be loaded already (a forkserver's worker), but JAX has not computed yet.
        backend.set_jax_threads(threads)
        setup_globals()
        Singleton.set_state(state)
        take_jobs(context, task_function, tasks, results)
    except KeyboardInterrupt:
        pass  # Ctrl-C or a kill: the run in progress is recorded KILLED, the rest is said
    background.flush()
    # Nothing is left to do, and a process that loaded Keras takes a second to tear down.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def take_jobs(context: HydraContext, task_function: Any, tasks: Any, results: Any) -> None:
    # The launching process counts the jobs as they end, in whichever worker.
    progress.hand_to(lambda *line: results.put(("progress", os.getpid(), None, line)))

    while (task := tasks.get()) is not None:
        idx, job_cfg = task[0], cloudpickle.loads(task[1])
        results.put(("started", os.getpid(), idx, None))
        HydraConfig.instance().set_config(job_cfg)
        ret = run_job(
            hydra_context=context,
            task_function=task_function,
            config=job_cfg,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        try:
            pickled = cloudpickle.dumps(ret)
        except Exception:  # an exception that cannot cross processes: its text can
            ret.return_value = RuntimeError(str(ret._return_value))
            pickled = cloudpickle.dumps(ret)
        results.put(("done", os.getpid(), idx, pickled))


def stop_when_orphaned(launcher: int) -> None:
    """A worker whose launching process died (kill -9) stops as a `kill` stops a run: its run
    ends KILLED, to be resumed by the same command again. The launching process is watched
    itself, not this one's parent: a forkserver's worker is its child, and the forkserver lives
    as long as any worker does."""
    try:
        process = psutil.Process(launcher)  # tells a later process that reuses its pid
    except psutil.NoSuchProcess:
        process = None

    def alive() -> bool:
        try:  # a zombie is dead, only not yet reaped
            return (
                process is not None
                and process.is_running()
                and process.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.NoSuchProcess:
            return False

    def watch() -> None:
        while alive():
            time.sleep(1)
        if os.environ.get(SERVED_AT_ENV):
            # The store it served is gone with it: nothing can be recorded, so nothing is
            # waited for. The run stays RUNNING until the next command finds its process gone,
            # ends it and resumes it from its checkpoint.
            os._exit(1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        os._exit(1)

    threading.Thread(target=watch, name="mnist-exp-orphan-watch", daemon=True).start()
