"""What a Hydra launcher does with a sweep's jobs: how many at once, where, on how many cores."""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf


def runs_in_this_process(launcher: DictConfig) -> bool:
    """Whether a sweep's jobs run one after another in the process that launched them (Hydra's
    basic launcher, also under the search sweeper)."""
    return launcher.get("_target_", "").endswith(".BasicLauncher")


def process_outlives_job(launcher: DictConfig) -> bool:
    """Whether a job's process goes on to the next job (Hydra's basic launcher, also under the
    search sweeper; a worker of hydra/launcher=together), so that one job's logging can overlap
    the next's training; a joblib or Ray worker may be stopped as soon as its job returns."""
    return launcher.get("_target_", "").endswith((".BasicLauncher", ".TogetherLauncher"))


def jobs_at_once(n_jobs: int | None) -> int:
    """How many jobs joblib runs at once for its `n_jobs` (None: one; -1: one per core, -2: all
    cores but one, as joblib counts)."""
    n_jobs = n_jobs or 1
    return max(1, (os.cpu_count() or 1) + 1 + n_jobs if n_jobs < 0 else n_jobs)


def jobs_side_by_side(launcher: DictConfig) -> int:
    """How many of a sweep's jobs run at the same time, for its time left: joblib's `n_jobs`, or
    as many as Ray's reserved cores fit in this machine's (a cluster has more); one for the basic
    launcher. The together launcher counts its own workers."""
    reserved = OmegaConf.select(launcher, "ray.remote.num_cpus")  # hydra-ray-launcher
    if reserved:
        return max(1, (os.cpu_count() or 1) // int(reserved))
    return jobs_at_once(launcher.get("n_jobs"))  # hydra-joblib-launcher


def cores_per_job(launcher: DictConfig) -> int | None:
    """The cores a job may use: what Ray or the together launcher reserved for it, or this
    machine's cores shared out among the jobs joblib runs at once; None when jobs run one at a
    time (the backend then uses them all)."""
    reserved = OmegaConf.select(launcher, "ray.remote.num_cpus")  # hydra-ray-launcher
    reserved = reserved or launcher.get("cores_per_worker")  # hydra/launcher=together
    if reserved:
        return max(1, int(reserved))
    parallel = jobs_at_once(launcher.get("n_jobs"))  # hydra-joblib-launcher
    return max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else None
