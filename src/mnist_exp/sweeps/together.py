"""hydra/launcher=together: a sweep of small jobs (seeds above all) fills the machine.

Single-threaded worker processes take jobs from a shared queue until none are left: one per
core, or more where that ends the sweep sooner (`workers_for`: three for five seeds on 2 cores,
so the last job does not train beside an idle core). A worker keeps its process from job to
job, so Python, Keras and its backend start once, the prepared data stays in memory
(training.data) and the compiled steps come from JAX's compilation cache; each job's figures and
model are logged on its worker's logging thread while the next job trains. On JAX the workers
are forks of one process that loaded all that once, as the sweep started (sweeps.forkserver). On
a CPU, single-threaded models side by side did more than one model on every thread or models
stacked with `jax.vmap` (bench/RESULTS.md).

The workers hand their logging to this process, which alone writes a local SQLite store: it
serves the store to them over 127.0.0.1 (tracking.served_store), so no tracking server is
started. Every job is still its own complete run, skipped when finished and resumed after a
kill, as with any launcher.

Jobs that cannot share these workers run after them, with a line saying why: jobs on another
Keras backend than the first job's get workers of their own (a process runs Keras on one
backend), and a job that asks for more threads than a worker has runs alone with them.
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext
from omegaconf import DictConfig, open_dict

from mnist_exp import interrupts
from mnist_exp.config import validate
from mnist_exp.sweeps import forkserver, progress
from mnist_exp.sweeps.job import InvalidSweep
from mnist_exp.tracking.served_store import Serving, served
from mnist_exp.tracking.uris import is_local_store

log = logging.getLogger("mnist_exp")


@dataclass
class TogetherLauncherConf:
    _target_: str = "hydra_plugins.mnist_exp_sweeper.together_launcher.TogetherLauncher"
    # Worker processes; null: as many as finish the jobs soonest, one or two per core
    # (sweeps.together.workers_for).
    workers: int | None = None
    # Filled in for each job by the launcher: its worker's threads (sweeps.launchers).
    cores_per_worker: int | None = None


ConfigStore.instance().store(
    group="hydra/launcher", name="together", node=TogetherLauncherConf, provider="mnist_exp"
)


@dataclass
class Group:
    """Jobs run by one set of workers: on one backend, each worker with `threads` threads."""

    backend: str
    threads: int | None  # None: the backend's default, every core
    workers: int
    jobs: list[tuple[int, DictConfig]] = field(default_factory=list)


def workers_for(jobs: int, cores: int) -> int:
    """How many single-threaded workers finish `jobs` alike jobs (seeds of one config) soonest
    on `cores` cores: the fewest with the shortest makespan, at most two per core. Jobs run in
    waves of one per worker, and a wave of w jobs takes max(1, w / cores) jobs' time, the
    cores shared among them. Five seeds on 2 cores: 3 workers, 2.5 jobs' time (three at once,
    then two), where one per core takes 3 (two, two, then one alone beside an idle core);
    measured side by side, 22.1-22.4 s against 24.5-25.0 s (docs/speed.md). Four seeds: 2
    workers."""

    def makespan(workers: int) -> float:
        waves, left = divmod(jobs, workers)
        return waves * max(1.0, workers / cores) + (max(1.0, left / cores) if left else 0.0)

    return min(range(1, max(1, min(jobs, 2 * cores)) + 1), key=lambda w: (makespan(w), w))


def plan(jobs: list[tuple[int, DictConfig]], workers: int | None, cores: int) -> list[Group]:
    """The jobs that go together first, in single-threaded workers (or fewer threads), then the
    ones that cannot, one at a time; a line for each of those saying why. `workers`: how many,
    or None for `workers_for` each group."""
    together: dict[str, list] = {}
    alone: list[Group] = []
    first_backend = None
    count = workers or workers_for(len(jobs), cores)
    share = max(1, cores // max(1, min(count, len(jobs))))  # a worker's cores
    for idx, job_cfg in jobs:
        typed = validate(job_cfg)
        backend = typed.train.backend.value
        first_backend = first_backend or backend
        wants = typed.train.threads
        if wants and wants > share:
            log.info("Job #%d runs alone after the others: train.threads=%d is more than a "
                     "worker's %d", idx, wants, share)  # fmt: skip
            alone.append(Group(backend, wants, 1, [(idx, job_cfg)]))
        else:
            together.setdefault(backend, []).append((idx, job_cfg))
    groups = []
    for backend, members in together.items():
        if backend != first_backend:
            log.info("%d job(s) on %s run after the %s ones: a process runs Keras on one "
                     "backend", len(members), backend, first_backend)  # fmt: skip
        n = min(workers, len(members)) if workers else workers_for(len(members), cores)
        groups.append(Group(backend, max(1, cores // n) if n > 1 else None, n, members))
    return groups + alone


class TogetherLauncher(Launcher):
    def __init__(self, workers: int | None = None, cores_per_worker: int | None = None) -> None:
        self.workers = workers
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: Any, config: DictConfig):
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        # This process trains nothing and holds MLflow's server, Hydra and SciPy: as it exits,
        # the collector kept off their objects makes its teardown 0.1 s instead of 1.3 s
        # (bench/RESULTS.md). Not in a process that trains: there, with it, h5py crashed the
        # teardown once in CI, over a checkpoint a full disk had left half written.
        atexit.register(gc.freeze)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        cores = os.cpu_count() or 1
        if self.workers is not None and self.workers < 1:
            raise InvalidSweep(f"hydra.launcher.workers={self.workers}: must be >= 1")
        jobs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            job_cfg = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(job_cfg):
                job_cfg.hydra.job.id = f"{job_cfg.hydra.job.name}_{idx}"
                job_cfg.hydra.job.num = idx
            jobs.append((idx, job_cfg))
        groups = plan(jobs, self.workers, cores)
        # Only what run_job uses of the context: the loader holds this sweep's sweeper.
        context = HydraContext(config_loader=None, callbacks=self.hydra_context.callbacks)
        uri, artifacts = self.config.tracking.uri, self.config.tracking.get("artifact_location")
        returns: dict[int, JobReturn] = {}
        local = is_local_store(uri)
        with served(uri, artifacts) if local else nullcontext(Serving()) as serving:
            if forkserver.context(groups[0].backend) is not None:
                # No worker is forked from this process: the store can answer at once, and its
                # app is made while the forkserver still loads (0.8 s that were the workers').
                serving.start()
            for group in groups:
                preloaded = forkserver.context(group.backend) is not None
                shared = f" sharing {cores} cores" if group.workers > cores else ""
                loaded = " (loaded once for them all)" if preloaded else ""
                log.info("%d job(s) on %d worker(s)%s, %s thread(s) each, Keras on %s%s",
                         len(group.jobs), group.workers, shared, group.threads or "all",
                         group.backend, loaded)  # fmt: skip
                state = Singleton.get_state()
                returns.update(run_group(group, context, self.task_function, state, serving))
        return [returns[idx] for idx, _ in jobs]


def run_group(
    group: Group, context: HydraContext, task_function: Any, state: dict, serving: Serving
) -> dict:
    """Run a group's jobs on its workers; each job's JobReturn by its number."""
    # Deferred: Hydra imports this launcher at every start, and these only when a group runs.
    import cloudpickle

    from mnist_exp.sweeps.together_worker import work

    # From the forkserver that loaded Keras, the data and MLflow as the sweep started
    # (sweeps.forkserver), where there is one for this backend. Otherwise forked from this
    # process while no thread of ours runs (the store is served only once they are started):
    # a worker then has Hydra, MLflow and our modules already imported. With threads about (a
    # second group), a fresh process.
    spawn = forkserver.context(group.backend)
    if spawn is None:
        how = "fork" if threading.active_count() == 1 and hasattr(os, "fork") else "spawn"
        spawn = multiprocessing.get_context(how)
    tasks, results = spawn.Queue(), spawn.Queue()
    for idx, job_cfg in group.jobs:
        with open_dict(job_cfg):
            job_cfg.hydra.launcher.cores_per_worker = group.threads
        tasks.put((idx, cloudpickle.dumps(job_cfg)))
    for _ in range(group.workers):
        tasks.put(None)
    # This process's environment as it is now (the parent run, the served store), which a
    # forkserver's worker would not have: it was started before them.
    environment = dict(os.environ)
    payload = cloudpickle.dumps((context, task_function, state, environment, group.threads))
    workers = [
        spawn.Process(target=work, args=(payload, tasks, results, os.getpid()), daemon=False)
        for _ in range(group.workers)
    ]
    for worker in workers:
        worker.start()
    serving.start()
    returns: dict[int, JobReturn] = {}
    running: dict[int, int] = {}  # worker pid -> its job
    configs = dict(group.jobs)
    try:
        while len(returns) < len(group.jobs):
            interrupts.raise_if_received()  # one a library swallowed while this process waited
            try:
                kind, pid, idx, pickled = results.get(timeout=0.5)
            except queue.Empty:
                lost = [w for w in workers if not w.is_alive() and w.exitcode != 0]
                for worker in lost:
                    workers.remove(worker)
                    if (idx := running.pop(worker.pid, None)) is not None:
                        returns[idx] = lost_job(idx, configs[idx], worker)
                if not any(w.is_alive() for w in workers):
                    for idx in set(configs) - set(returns):
                        returns[idx] = lost_job(idx, configs[idx], None)
                continue
            if kind == "started":
                running[pid] = idx
            elif kind == "progress":
                progress.job_ended(*pickled, workers=group.workers)
            else:
                running.pop(pid, None)
                returns[idx] = cloudpickle.loads(pickled)
        for worker in workers:
            worker.join()  # after its logging thread is done
    except BaseException:
        for worker in workers:
            if worker.is_alive():  # they had the Ctrl-C too; a kill ends their runs as KILLED
                os.kill(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.join(timeout=30)
        raise
    return returns


def lost_job(idx: int, job_cfg: DictConfig, worker: Any) -> JobReturn:
    """What a job whose worker died before it ended returns: NaN, as a failed job does."""
    how = f"worker {worker.pid} died (exit code {worker.exitcode})" if worker else "no worker left"
    log.error("Job #%d did not finish: %s; the same command again continues it", idx, how)
    ret = JobReturn(overrides=list(job_cfg.hydra.overrides.task), cfg=job_cfg)
    ret.status, ret.return_value = JobStatus.COMPLETED, float("nan")
    return ret
