"""Store mistakes caught before anything trains, each named in one line with its fix.

An unsupported URI scheme, a database driver that is not installed, a SQLite store in a
directory that cannot be written, and a file that is not an MLflow database: MLflow reports each
with a traceback, some only once a run has trained (its artifacts). Passwords in a URI are never
printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from mnist_exp.tracking.health import TrackingUnavailable
from mnist_exp.tracking.uris import is_local_store, shown, sqlite_path

# What MLflow's tracking client can write to, by URI scheme (a `+driver` suffix aside).
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
SERVERS = ("http", "https", "databricks")
# What installs SQLAlchemy's driver, by its name (the project's optional extra for PostgreSQL).
INSTALL = {
    "psycopg": "pip install 'mnist-exp[postgres]'",
    "psycopg2": "pip install psycopg2-binary",
    "mysqldb": "pip install mysqlclient",
    "pymysql": "pip install pymysql",
    "pyodbc": "pip install pyodbc",
}


def check_uri(uri: str) -> None:
    """A scheme MLflow can use, and for a database URI its driver installed."""
    scheme = urlsplit(uri).scheme.lower()
    dialect = scheme.split("+")[0]
    if dialect in SERVERS:
        return
    if dialect in ("", "file"):
        raise TrackingUnavailable(
            f"tracking.uri={uri}: MLflow 3 keeps runs in a database, not a directory. Use "
            "sqlite:///ABSOLUTE/PATH/mlflow.db (the default, under mlruns/) or a tracking server."
        )
    if dialect not in DATABASES:
        raise TrackingUnavailable(
            f"tracking.uri={shown(uri)}: unsupported scheme '{scheme or 'none'}'. Use "
            "sqlite:///ABSOLUTE/PATH/mlflow.db (the default, under mlruns/), a tracking server "
            "(http://HOST:PORT), or a database (postgresql://USER@HOST/DB)."
        )
    if dialect != "sqlite":
        check_driver(uri)


def check_driver(uri: str) -> None:
    """SQLAlchemy's driver for the URI (its default for the dialect, or the `+driver` named)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect_class = make_url(uri).get_dialect()
        dialect_class.import_dbapi()
    except (ArgumentError, NoSuchModuleError) as err:
        raise TrackingUnavailable(f"tracking.uri={shown(uri)}: {err}") from None
    except ImportError as err:
        install = INSTALL.get(dialect_class.driver, f"pip install {dialect_class.driver}")
        raise TrackingUnavailable(
            f"tracking.uri={shown(uri)} needs the database driver '{dialect_class.driver}' "
            f"({err.name or err}), which is not installed. Install the driver: {install}"
        ) from None


def check_sqlite_dir(uri: str, artifact_location: str | None = None) -> None:
    """The store's directory (and a local artifact directory) can be created and written."""
    db = sqlite_path(uri)
    if db is None:
        return
    if not db.is_absolute():
        raise TrackingUnavailable(
            f"tracking.uri={uri}: the path must be absolute (sqlite:/// then /path/to/mlflow.db, "
            "four slashes in all), or MLflow would resolve it against each process's directory"
        )
    places = [("tracking.uri", uri, db.parent)]
    if artifact_location and "://" not in artifact_location:
        places.append(("tracking.artifact_location", artifact_location, Path(artifact_location)))
    for key, value, directory in places:
        problem = unwritable(directory)
        if problem:
            raise TrackingUnavailable(
                f"{key}={value}: cannot write to {directory} ({problem}). Point {key} at a "
                "directory you can write, or fix its permissions."
            )
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        raise TrackingUnavailable(f"tracking.uri={uri}: {db} cannot be read and written; fix its "
                                  "permissions or point tracking.uri at another store")  # fmt: skip


def unwritable(directory: Path) -> str | None:
    """Why files cannot be created in `directory` (made if missing); None when they can."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return err.strerror or str(err)
    if not os.access(directory, os.W_OK | os.X_OK):
        return "permission denied"
    return None


def corrupt_store(uri: str, err: Exception) -> TrackingUnavailable:
    """The error for a SQLite file that MLflow cannot open as its database."""
    db = sqlite_path(uri)
    reason = str(getattr(err, "orig", None) or err).splitlines()[0]
    return TrackingUnavailable(
        f"tracking.uri={uri}: {db} is not a usable MLflow database ({reason}). Move it aside "
        f"(mv {db} {db}.bad) to start a new store there, or point tracking.uri at another one."
    )


def check_store_takes_parallel_jobs(launcher: str, uri: str) -> None:
    """Jobs that run at once, in several processes, must log through a server: writing one
    SQLite file each, they race on its schema and fail with `database is locked`. The basic
    launcher runs one job at a time; the together launcher serves the store to its workers."""
    if launcher not in ("basic", "together") and is_local_store(uri):
        raise TrackingUnavailable(
            f"hydra/launcher={launcher} runs jobs in several processes at once, and they must "
            f"not all write one SQLite store ({uri}): they race and fail with `database is "
            "locked`. Log through a tracking server: `make sweep-parallel`, or `make server` "
            "in another terminal and add tracking=server."
        )
