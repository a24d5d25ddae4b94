"""Progress across a sweep's jobs: after each one, a line such as
`[3/6] dense-h64: val 0.9712 in 14 s; about 45 s left`.

The sweeper says how many jobs there are and the parent run when the sweep started, through
environment variables, so that jobs in a launcher's worker processes can say it too. Where jobs
end out of order (hydra/launcher=together), each job hands its line to the launching process,
which counts them as they end.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

from mnist_exp.names import SWEEP_JOBS_ENV, SWEEP_START_ENV

log = logging.getLogger("mnist_exp")

_handed_to: Callable[[str, str, float], None] | None = None  # a worker's: the launcher
_ended: list[float] = []  # the launching process's: the seconds of each job that has ended


def sweep_started() -> None:
    os.environ[SWEEP_START_ENV] = str(time.time())


def sweep_has(jobs: int) -> None:
    os.environ.setdefault(SWEEP_JOBS_ENV, str(jobs))


def sweep_ended() -> None:
    _ended.clear()
    for name in (SWEEP_JOBS_ENV, SWEEP_START_ENV):
        os.environ.pop(name, None)


def line(done: int, total: int, name: str, what: str, left: float) -> str:
    """`[done/total] name: what; about N s left`."""
    rest = "done" if done >= total else f"about {left:.0f} s left"
    return f"[{done}/{total}] {name}: {what}; {rest}"


def job_done(position: int, name: str, value: object, seconds: float, skipped: str | None) -> None:
    """Job `position` (Hydra's 0-based job number) of the sweep has ended with `value` (its
    validation accuracy, NaN for a failure) after `seconds`; `skipped`, the finished run's id."""
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
        _handed_to(name, what, seconds)
        return
    done = min(position + 1, total)
    elapsed = time.time() - float(os.environ.get(SWEEP_START_ENV, time.time()))
    # One job at a time: the pace so far.
    log.info("%s", line(done, total, name, what, elapsed / done * (total - done)))


def hand_to(report: Callable[[str, str, float], None]) -> None:
    """In a worker whose jobs end out of order: each job's (name, what, seconds) goes to
    `report`, for the launching process to say with `job_ended`."""
    global _handed_to
    _handed_to = report


def job_ended(name: str, what: str, seconds: float, workers: int) -> None:
    """In the launching process: a worker's job has ended; its line, counted in the order the
    jobs ended. The time left is the jobs left at the mean job's seconds, `workers` at a time
    (the pace since the sweep started would count its start-up once per job ended)."""
    total = int(os.environ.get(SWEEP_JOBS_ENV, "0"))
    _ended.append(seconds)
    if total:
        done = min(len(_ended), total)
        left = sum(_ended) / len(_ended) * (total - done) / max(1, workers)
        log.info("%s", line(done, total, name, what, left))
