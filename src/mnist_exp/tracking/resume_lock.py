"""Which process resumes a run: a file lock beside the run's checkpoint, naming its holder.

Two processes that find the same KILLED or FAILED run (the same command started twice) would
both continue it and log every epoch twice. The first takes `<checkpoint_dir>/<run id>.lock`
(fcntl.flock: the kernel lets go of it when its process dies, kill -9 included) and holds it
until the run has ended; the other is told, in one line, which process holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from mnist_exp.errors import UserError


class RunBusy(UserError):
    """Another live process is resuming this run."""


class ResumeLock:
    """Held on a run by this process, until `release` (or the process's end)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file lets go of the flock
            self._fd = None


def lock_path(checkpoint_dir: str | Path, run_id: str) -> Path:
    return Path(checkpoint_dir) / f"{run_id}.lock"


def take(checkpoint_dir: str | Path, run_id: str, run_name: str) -> ResumeLock:
    """The lock on resuming `run_id`, or RunBusy naming the process that holds it."""
    path = lock_path(checkpoint_dir, run_id)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise busy(path, run_id, run_name) from None
    held = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}  # fmt: skip
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(held).encode(), 0)
    return ResumeLock(path, fd)


def check_free(checkpoint_dir: str | Path, run_id: str, run_name: str) -> None:
    """RunBusy if a process holds `run_id`'s lock: a RUNNING run that another process resumed
    (a fresh run holds none, so starting a config twice still gives two runs)."""
    path = lock_path(checkpoint_dir, run_id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise busy(path, run_id, run_name) from None
    finally:
        os.close(fd)


def busy(path: Path, run_id: str, run_name: str) -> RunBusy:
    return RunBusy(
        f"run {run_id} ({run_name}) is being resumed by {holder(path)} (lock {path}); wait "
        "for it to end, or stop it, then run the same command again"
    )


def holder(path: Path) -> str:
    """Who holds the lock at `path`, as its holder wrote it."""
    for _ in range(20):  # the holder writes its name just after it takes the lock
        try:
            held = json.loads(path.read_text())
            return f"process {held['pid']} on {held['host']} since {held['since']}"
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    return "another process"


def remove(checkpoint_dir: str | Path, run_id: str) -> None:
    """Once the run is FINISHED. A process still waiting on the old file reads the run's status
    again once it has the lock, so it does not resume a finished run."""
    lock_path(checkpoint_dir, run_id).unlink(missing_ok=True)
