"""Progress across a sweep's jobs: after each one, a line such as
`[3/6] dense-h64: val 0.9712 in 14 s; about 45 s left`.

The sweeper says how many jobs there are and how much work each is, through environment
variables, so that jobs in a launcher's worker processes can say it too. Where jobs end out of
order (hydra/launcher=together), each job hands its line to the launching process, which counts
them as they end.

The time left is measured job by job: what a job took besides its fit (building, compiling,
logging), and its fit's pace per image and epoch. Each job left is guessed at the mean of the
one plus the other times its own epochs and images, so `-m train.epochs=1,100` is not said to be
half done after its first job. The first job's measures stand alone only until a second job's
come: it paid for what a process does once. A sweep that mixes model families is guessed as if
an image cost each the same.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from collections.abc import Callable, Iterable, Sequence

from omegaconf import DictConfig

from mnist_exp.config import MNIST_TRAIN_SIZE
from mnist_exp.names import SWEEP_JOBS_ENV, SWEEP_WORK_ENV

log = logging.getLogger("mnist_exp")

# A worker's, where jobs end out of order: the launching process, which says the lines.
_handed_to: Callable[[int, str, str, float | None, float], None] | None = None
# Of the jobs this process has seen end: each trained one's seconds and fit seconds, and those
# an earlier sweep had done (no pace to learn from them, nothing left to do).
_measured: dict[int, tuple[float, float]] = {}
_skipped: set[int] = set()
_ended: set[int] = set()  # the launching process's: the jobs its workers have ended


def work(job_cfg: DictConfig) -> int:
    """A job's work: the images its epochs go through."""
    return job_cfg.train.epochs * (job_cfg.data.limit_train or MNIST_TRAIN_SIZE)


def sweep_has(jobs: int, batch_work: Sequence[int]) -> None:
    """The sweep has `jobs` jobs in all; the next batch of them, in order, `batch_work`."""
    os.environ.setdefault(SWEEP_JOBS_ENV, str(jobs))
    known = os.environ.get(SWEEP_WORK_ENV, "")
    os.environ[SWEEP_WORK_ENV] = ",".join(filter(None, [known, *map(str, batch_work)]))


def sweep_ended() -> None:
    for jobs in (_measured, _skipped, _ended):
        jobs.clear()
    for name in (SWEEP_JOBS_ENV, SWEEP_WORK_ENV):
        os.environ.pop(name, None)


def seconds_left(ended: Iterable[int], total: int, side_by_side: int) -> float | None:
    """The time the jobs not `ended` (Hydra's job numbers) will take, `side_by_side` at a time,
    guessed from the jobs measured so far; None before any job has trained."""
    if not _measured:
        return None
    ended = set(ended)
    left = [job for job in range(total) if job not in ended and job not in _skipped]
    # The first job measured paid for what a process does once (preparing the data, compiling
    # the steps): once there are others, they say what a job costs.
    measured = dict(list(_measured.items())[1:]) or _measured
    work = [int(w) for w in os.environ.get(SWEEP_WORK_ENV, "").split(",") if w]
    if len(work) != total:  # no work said (not our sweeper): the jobs taken as alike
        return statistics.mean(s for s, _ in measured.values()) * len(left) / side_by_side
    besides_fit = statistics.mean(max(0.0, s - f) for s, f in measured.values())
    pace = sum(f for _, f in measured.values()) / sum(work[job] for job in measured)
    return sum(besides_fit + pace * work[job] for job in left) / side_by_side


def line(done: int, total: int, name: str, what: str, left: float | None) -> str:
    """`[done/total] name: what; about N s left`."""
    if done >= total:
        return f"[{done}/{total}] {name}: {what}; done"
    return f"[{done}/{total}] {name}: {what}" + (
        "" if left is None else f"; about {left:.0f} s left"
    )


def job_done(
    position: int,
    name: str,
    value: object,
    seconds: float,
    fit_seconds: float,
    skipped: str | None,
    side_by_side: int = 1,
) -> None:
    """Job `position` (Hydra's 0-based job number) of the sweep has ended with `value` (its
    validation accuracy, NaN for a failure) after `seconds`, `fit_seconds` of them fitting;
    `skipped`, the finished run's id. `side_by_side`: how many of the sweep's jobs run at once."""
    total = int(os.environ.get(SWEEP_JOBS_ENV, "0"))
    if not total:
        return  # not a sweep the sweeper counted (a single run, a search's trial)
    if skipped:
        what = f"skipped, already finished in run {skipped}"
    elif isinstance(value, float) and not math.isnan(value):
        what = f"val {value:.4f} in {seconds:.0f} s"
    else:
        what = f"did not finish (see its run) after {seconds:.0f} s"
    if _handed_to is not None:
        _handed_to(position, name, what, None if skipped else seconds, fit_seconds)
        return
    _measure(position, None if skipped else seconds, fit_seconds)
    # Jobs launched one after another (or by joblib or Ray, which start them in order): the
    # ones before this are taken to have ended.
    done = range(min(position + 1, total))
    log.info("%s", line(len(done), total, name, what, seconds_left(done, total, side_by_side)))


def _measure(position: int, seconds: float | None, fit_seconds: float) -> None:
    if seconds is None:
        _skipped.add(position)
    elif fit_seconds:  # a failure's is not a pace to go by
        _measured[position] = (seconds, fit_seconds)


def hand_to(report: Callable[[int, str, str, float | None, float], None]) -> None:
    """In a worker whose jobs end out of order: each job's (position, name, what, seconds or
    None if skipped, fit seconds) goes to `report`, for the launching process's `job_ended`."""
    global _handed_to
    _handed_to = report


def job_ended(
    position: int, name: str, what: str, seconds: float | None, fit_seconds: float, workers: int
) -> None:
    """In the launching process: a worker's job has ended; its line, counted in the order the
    jobs ended, `workers` of them running at a time."""
    total = int(os.environ.get(SWEEP_JOBS_ENV, "0"))
    _measure(position, seconds, fit_seconds)
    _ended.add(position)
    if total:
        left = seconds_left(_ended, total, workers)
        log.info("%s", line(min(len(_ended), total), total, name, what, left))
