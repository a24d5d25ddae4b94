"""What a tracking URI names: a local SQLite store, or a server; the one `sqlite:///` parser."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from mnist_exp.names import SERVED_AT_ENV, SERVED_STORE_ENV

SQLITE = "sqlite:///"


def is_local_store(uri: str) -> bool:
    """A SQLite store on this machine, also when this process reaches it through the launching
    process that serves it (tracking.served_store): that one is not a server that can go away."""
    served = uri == os.environ.get(SERVED_AT_ENV)
    return served or uri.startswith(("sqlite:", "file:")) or "://" not in uri


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://")) and not is_local_store(uri)


def reached_at(uri: str) -> str:
    """Where MLflow reaches `uri` from this process: the launching process's address when it
    serves this store to its workers, else `uri` itself."""
    return os.environ[SERVED_AT_ENV] if uri == os.environ.get(SERVED_STORE_ENV) else uri


def is_database_server(uri: str) -> bool:
    """A database MLflow reaches over the network (PostgreSQL, MySQL, SQL Server)."""
    return urlsplit(uri).scheme.lower().split("+")[0] in ("postgresql", "mysql", "mssql")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI; None for any other store."""
    return Path(uri.removeprefix(SQLITE)) if uri.startswith(SQLITE) else None


def sqlite_uri(path: str | Path) -> str:
    """The `sqlite:///` URI of a database file (absolute paths give four slashes, as MLflow and
    SQLAlchemy expect)."""
    return f"{SQLITE}{path}"


def shown(uri: str) -> str:
    """`uri` as it may be printed: any password masked."""
    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(f":{parts.password}@", ":***@", 1)
    return uri
