"""A full disk, wherever it is (the store, the artifacts, the checkpoints, Hydra's outputs): one
line naming the path that could not be written and the fix, not a traceback.

Python's OSError carries ENOSPC (or EDQUOT, over a quota) and usually the file; SQLite says
"database or disk is full" through SQLAlchemy and MLflow, without a file, so the store's own
database is named; h5py puts the errno in its message only.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

from mnist_exp.errors import UserError
from mnist_exp.tracking.uris import shown, sqlite_path

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
SQLITE_FULL = "database or disk is full"
# What errors that lost their errno still say (h5py: "errno = 28, error message = 'No space
# left on device'").
FULL_WORDS = ("No space left on device", "Disk quota exceeded", f"errno = {errno.ENOSPC},")


class DiskFull(UserError):
    """A write failed because its disk (or quota) is full."""

    def __init__(self, path: str, why: str, key: str | None = None) -> None:
        named = f"{key}={path}" if key else path
        super().__init__(
            f"{named}: cannot be written, {why}{free_space(path)}. Free some space there, then "
            "run the same command again: finished runs are skipped, and the others resume from "
            "their checkpoints"
        )
        self.path = path
        self.why = why


def free_space(path: str) -> str:
    """`; <mount point> has <n> MB free`, for the filesystem that holds `path`."""
    found = Path(path)
    while not found.exists() and found != found.parent:
        found = found.parent
    mount = found
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        free = shutil.disk_usage(found).free
    except OSError:
        return ""
    return f" ({mount} has {free / 2**20:.1f} MB free)"


def disk_full(err: BaseException, places: dict[str, str | None] | None = None) -> DiskFull | None:
    """The DiskFull that `err` (or an error that led to it) amounts to, if any. `places`: where
    this run writes, by config key (tracking.uri, tracking.artifact_location, ...), to name the
    one that is full when the error does not say (MLflow's artifact copies, SQLite)."""
    seen: set[int] = set()
    link: BaseException | None = err
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, DiskFull):
            return link
        text = str(link)
        if isinstance(link, OSError) and (
            link.errno in FULL_ERRNOS or any(words in text for words in FULL_WORDS)
        ):
            why = os.strerror(link.errno) if link.errno in FULL_ERRNOS else "the disk is full"
            path = link.filename2 or link.filename
            if path:
                return DiskFull(str(path), why.lower())
            key, place = fullest(places or {})
            return DiskFull(place or "a file", why.lower(), key)
        if SQLITE_FULL in text:
            uri = (places or {}).get(STORE_KEY) or _tracking_uri()
            database = sqlite_path(uri) if uri else None
            return DiskFull(str(database or shown(uri or "the tracking store")), SQLITE_FULL)
        link = link.__cause__ or link.__context__
    return None


STORE_KEY = "tracking.uri"


def fullest(places: dict[str, str | None]) -> tuple[str | None, str | None]:
    """Of the places a run writes to, the one on the disk with the least space left."""
    free = {}
    for key, place in places.items():
        path = sqlite_path(place) if key == STORE_KEY and place else place
        if not path or "://" in str(path):
            continue
        found = Path(path)
        while not found.exists() and found != found.parent:
            found = found.parent
        try:
            free[key, str(path)] = shutil.disk_usage(found).free
        except OSError:
            continue
    if not free:
        return None, None
    return min(free, key=free.get)


def _tracking_uri() -> str | None:
    import mlflow

    return mlflow.get_tracking_uri()


class _NotWhileFull(logging.Filter):
    """Drops MLflow's own multi-line reports of a full disk (the SQL, its parameters): the
    command says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return SQLITE_FULL not in text and not any(words in text for words in FULL_WORDS)


# The loggers that report a failed write before the error reaches us: the SQL store, and the
# system-metrics thread that goes on sampling.
MLFLOW_LOGGERS = ("mlflow.store.db.utils", "mlflow.system_metrics.system_metrics_monitor")


def quiet_mlflow_reports() -> None:
    for name in MLFLOW_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NotWhileFull) for f in logger.filters):
            logger.addFilter(_NotWhileFull())
