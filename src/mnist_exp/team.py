"""The team setup, on this machine: PostgreSQL, an MLflow server on it with a served artifact
store, and a Ray head, all on 127.0.0.1; a sweep through them; then everything stopped.

python -m mnist_exp.team                            # +experiment=hidden_sweep     (make team)
python -m mnist_exp.team -- model.hidden=64,128 train.epochs=2       # any sweep overrides
python -m mnist_exp.team --dir team/ -- ...         # keep the database and artifacts in team/
                                                    # (again: finished jobs are skipped)

It is what a team runs on three machines (docs/team.md), run here: the sweep's jobs are
Ray tasks that log through the MLflow server, which alone writes to PostgreSQL and to its
artifact folder. Without --dir, everything lives in a fresh tmp folder that is removed at the end.

Every door is locked: PostgreSQL takes only passwords (scram-sha-256), the MLflow server only
its users (MLflow's basic-auth app), the Ray head only its token. The secrets are generated on
first start into files of mode 600 in the folder (secrets/*.pgpass, secrets/ray_token,
mlflow/auth/credentials) and reach each process through a file or its environment, never its
command line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mnist_exp import interrupts
from mnist_exp.cli import fail, options_and_the_rest
from mnist_exp.names import UI_URL_ENV
from mnist_exp.server import ServerError, run_command, tracking_server
from mnist_exp.tracking import basic_auth, credentials, postgres
from mnist_exp.tracking.loopback import HOST, free_port

# Ray's single-node mode: every listener on 127.0.0.1 (otherwise Ray swaps 127.0.0.1 for the
# machine's outward address); no usage reports sent anywhere; and no 30 s "drain" when we stop
# the head (it is for Serve's rolling upgrades: a sweep's head has nothing to drain).
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # fmt: skip
DEFAULT_SWEEP = ["+experiment=hidden_sweep"]


# `ray start` gives its raylet a fixed 30 s to join the head's GCS; on two busy cores (a sweep or
# a test suite beside it) that is sometimes not enough, and a second try usually is.
RAY_START_ATTEMPTS = 3


def ray_token(folder: Path) -> dict[str, str]:
    """Ray's token authentication: the variables that turn it on and name the token's file
    (mode 600, 256 random bits as Ray makes them, generated on first use). Ray's processes and
    clients read the token from that file; it is never in an argument or a variable."""
    path = Path(folder).resolve() / "secrets" / "ray_token"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


@contextlib.contextmanager
def ray_head(
    num_cpus: int | None = None, start_timeout: float = 120, env: dict[str, str] | None = None
) -> Iterator[str]:
    """A one-machine Ray cluster while the block runs; yields its address (127.0.0.1:PORT).
    `env` is added to the head's environment (ray_token: its token authentication).

    `ray start --head --block` stays in the foreground, so stopping it is one signal to one
    process, which takes its whole cluster down; `ray stop` would kill every Ray process on the
    machine, other people's included."""
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        raise ServerError(f"{ray} not found: install the `ray` extra (`make setup`)")
    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        address = f"{HOST}:{free_port()}"
        # Ray keeps unix sockets in its temp dir, and their paths must stay short.
        temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        with tempfile.TemporaryFile() as output:  # what the head says
            head = _start_ray_head(ray, address, num_cpus, temp_dir, output, env or {})
            try:
                if _wait_for_ray_head(head, output, start_timeout):
                    yield address
                    return
                exited, said = head.poll(), _read(output)
            finally:
                _stop_ray_head(head, temp_dir)
        ended = f"not up after {start_timeout:.0f}s" if exited is None else f"exit code {exited}"
        if "timed out during startup" not in said or attempt == RAY_START_ATTEMPTS:
            last_lines = "\n".join(said.strip().splitlines()[-15:])
            raise ServerError(f"the Ray head on {address} did not start ({ended}):\n{last_lines}")
        print(f"The Ray head timed out during its start-up (a busy machine?); trying again "
              f"({attempt + 1} of {RAY_START_ATTEMPTS})", file=sys.stderr, flush=True)  # fmt: skip


def _start_ray_head(
    ray: Path, address: str, num_cpus: int | None, temp_dir: str, output: IO[bytes],
    env: dict[str, str],
) -> subprocess.Popen:  # fmt: skip
    return subprocess.Popen(
        [str(ray), "start", "--head", "--block", f"--node-ip-address={HOST}",
         f"--port={address.split(':')[1]}", f"--num-cpus={num_cpus or os.cpu_count()}",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env={**os.environ, **RAY_ENV, **env}, stdout=output, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _wait_for_ray_head(head: subprocess.Popen, output: IO[bytes], timeout: float) -> bool:
    """Whether the head's node joined within `timeout` seconds (False: it exited, or is late).

    `ray start` says "Ray runtime started" once its node has joined the cluster, which is when
    a sweep can connect. (Asking `ray status` every second instead, a Python process each time,
    took a core from the starting head: its raylet then missed Ray's 30 s more often than not.)
    """
    deadline = time.monotonic() + timeout
    while "Ray runtime started" not in _read(output):
        if head.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _read(output: IO[bytes]) -> str:
    """All the head has written so far, read without moving the offset it writes at."""
    return os.pread(output.fileno(), os.fstat(output.fileno()).st_size, 0).decode(errors="replace")


def _stop_ray_head(head: subprocess.Popen, temp_dir: str) -> None:
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    shutil.rmtree(temp_dir, ignore_errors=True)


def runs_in_postgres(folder: Path, port: int) -> list[tuple[str, str, bool, int]]:
    """(experiment, status, is a sweep's parent run, count), read straight from PostgreSQL."""
    import psycopg

    query = """
        SELECT e.name, r.status, p.value IS NULL AS is_parent, count(*)
        FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id
        LEFT JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'mlflow.parentRunId'
        WHERE r.lifecycle_stage = 'active'
        GROUP BY e.name, r.status, is_parent ORDER BY e.name, is_parent DESC, r.status"""
    with psycopg.connect(postgres.conninfo(folder, port)) as c:
        return c.execute(query).fetchall()


def summary(folder: Path, port: int) -> str:
    lines = [f"Runs in PostgreSQL ({HOST}:{port}/{postgres.DATABASE}, read with SQL):"]
    for experiment, status, is_parent, count in runs_in_postgres(folder, port):
        kind = "sweep (parent) run" if is_parent else "job run"
        lines.append(f"  {experiment}: {count} {kind}{'s' * (count != 1)} {status}")
    return "\n".join(lines)


@dataclass
class Team:
    """Where the team's servers listen, and what a sweep needs in its environment to get in."""

    pg_port: int
    mlflow_uri: str
    ray_address: str
    env: dict[str, str]


@contextlib.contextmanager
def team_servers(folder: Path) -> Iterator[Team]:
    """PostgreSQL, the MLflow server on it and the Ray head, each with its door locked, while
    the block runs."""
    with postgres.postgres_server(folder) as pg_port:
        print(f"PostgreSQL on {HOST}:{pg_port} (scram-sha-256: passwords in "
              f"{folder / 'secrets'}), data in {folder / 'pgdata'}", flush=True)  # fmt: skip
        backend = postgres.sqlalchemy_uri(folder, pg_port)
        store = folder / "mlflow"
        # On its first start MLflow creates its schema in PostgreSQL (dozens of migrations): a
        # minute or more on a busy machine.
        with tracking_server(store, start_timeout=600, backend_uri=backend, auth=True) as uri:
            admin = basic_auth.admin_credentials(store)
            print(f"MLflow server on {uri} (users and passwords: the admin's in {admin}; the "
                  f"UI while the sweep runs), runs in PostgreSQL as {postgres.USER}, artifacts "
                  f"served from {store / 'artifacts'}", flush=True)  # fmt: skip
            token = ray_token(folder)
            with ray_head(env=token) as address:
                print(f"Ray head on {address} (token authentication: its token in "
                      f"{token['RAY_AUTH_TOKEN_PATH']})", flush=True)  # fmt: skip
                env = {**RAY_ENV, "RAY_ADDRESS": address, **token, **credentials.environment(admin)}
                yield Team(pg_port, uri, address, env)


def team_sweep(folder: Path, overrides: list[str]) -> int:
    """Start PostgreSQL, the MLflow server and the Ray head, run the sweep, stop all three."""
    with team_servers(folder) as team:
        command = [sys.executable, "-m", "mnist_exp.run", "--multirun",
                   "hydra/launcher=ray_cluster", "tracking=server", *overrides]  # fmt: skip
        print("$", " ".join(command[2:]), flush=True)
        # Its runs are in PostgreSQL, which no UI shows once the team setup stops: no links.
        code = run_command(command, team.mlflow_uri, env={**team.env, UI_URL_ENV: ""})
        print(summary(folder, team.pg_port), flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], usage="%(prog)s [--dir DIR] [-- OVERRIDES ...]"
    )
    parser.add_argument("--dir", type=Path,
                        help="keep PostgreSQL's data and the artifacts here (default: a tmp "
                        "folder, removed at the end)")  # fmt: skip
    args, overrides = options_and_the_rest(parser, argv)
    interrupts.handle()
    # A short path: PostgreSQL's unix socket lives in it, and those paths are limited to ~100.
    folder = args.dir.resolve() if args.dir else Path(tempfile.mkdtemp(prefix="team-", dir="/tmp"))
    try:
        return team_sweep(folder, overrides or DEFAULT_SWEEP)
    except (postgres.PostgresError, ServerError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        print("Interrupted", flush=True)
        return 130
    finally:
        # Each server was stopped as its block ended, on success, error or Ctrl-C alike.
        if args.dir is None:
            postgres.remove(folder)
        print("Stopped Ray, the MLflow server and PostgreSQL" +
              ("" if args.dir else f"; removed {folder}"), flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
