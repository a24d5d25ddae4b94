"""Progress across a sweep's jobs: after each one, a line such as
`[3/6] dense-h64: val 0.9712 in 14 s; about 45 s left`.

The sweeper says how many jobs there are and the parent run when the sweep started, through
environment variables, so that jobs in a launcher's worker processes can say it too.
"""

from __future__ import annotations

import logging
import math
import os
import time

from mnist_exp.names import SWEEP_JOBS_ENV, SWEEP_START_ENV

log = logging.getLogger("mnist_exp")


def sweep_started() -> None:
    os.environ[SWEEP_START_ENV] = str(time.time())


def sweep_has(jobs: int) -> None:
    os.environ.setdefault(SWEEP_JOBS_ENV, str(jobs))


def sweep_ended() -> None:
    for name in (SWEEP_JOBS_ENV, SWEEP_START_ENV):
        os.environ.pop(name, None)


def line(done: int, total: int, name: str, what: str, elapsed: float) -> str:
    """`[done/total] name: what; about N s left`, the time left from the pace so far."""
    rest = "done" if done >= total else f"about {elapsed / done * (total - done):.0f} s left"
    return f"[{done}/{total}] {name}: {what}; {rest}"


def job_done(position: int, name: str, value: object, seconds: float, skipped: str | None) -> None:
    """Job `position` (Hydra's 0-based job number) of the sweep has ended with `value` (its
    validation accuracy, NaN for a failure) after `seconds`; `skipped`, the finished run's id."""
    total = int(os.environ.get(SWEEP_JOBS_ENV, "0"))
    if not total:
        return  # not a sweep the sweeper counted (a single run, a search's trial)
    elapsed = time.time() - float(os.environ.get(SWEEP_START_ENV, time.time()))
    if skipped:
        what = f"skipped, already finished in run {skipped}"
    elif isinstance(value, float) and not math.isnan(value):
        what = f"val {value:.4f} in {seconds:.0f} s"
    else:
        what = f"did not finish (see its run) after {seconds:.0f} s"
    log.info("%s", line(min(position + 1, total), total, name, what, elapsed))
