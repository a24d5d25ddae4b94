"""What a tracking URI names: a local SQLite store, or a server; the one `sqlite:///` parser."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

SQLITE = "sqlite:///"


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


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
