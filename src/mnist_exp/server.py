"""An MLflow tracking server over a SQLite store, bound to 127.0.0.1, that always gets stopped.

Parallel jobs must not write one SQLite file each on their own (they race on its schema and
fail with `database is locked`); they log through one server, which alone writes the file.

python -m mnist_exp.server                     # serve mlruns/ until Ctrl-C   (make server, make ui)
python -m mnist_exp.server -- CMD [ARGS...]    # serve while CMD runs, then stop
                                               # (CMD gets MLFLOW_TRACKING_URI: make sweep-parallel)
python -m mnist_exp.server --auth              # with users and passwords (make ui AUTH=1):
                                               # the admin's in mlruns/auth/credentials
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

from mnist_exp import interrupts
from mnist_exp.cli import options_and_the_rest
from mnist_exp.config import PROJECT_ROOT
from mnist_exp.names import LOCAL_UI, UI_URL_ENV
from mnist_exp.tracking import basic_auth, credentials, orphans
from mnist_exp.tracking.health import health_problem
from mnist_exp.tracking.loopback import HOST, free_port
from mnist_exp.tracking.uris import sqlite_uri

DEFAULT_STORE = PROJECT_ROOT / "mlruns"


class ServerError(RuntimeError):
    pass


def is_up(uri: str, timeout: float = 1.0) -> bool:
    return health_problem(uri, timeout) is None


def stop_group(proc: subprocess.Popen) -> None:
    # The server runs uvicorn workers and huey task consumers as children: stop the whole group.
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def tracking_server(
    store: Path = DEFAULT_STORE,
    port: int | None = None,
    start_timeout: float = 300,
    backend_uri: str | None = None,
    auth: bool = False,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Serve `store` (mlflow.db + artifacts/) while the block runs; yields the server's URI.
    `backend_uri` puts the runs in another database (PostgreSQL: mnist_exp.team) instead.
    `auth` puts MLflow's basic-auth app in front (users in <store>/auth/, the admin's
    credentials in <store>/auth/credentials); `env` is added to the server's environment."""
    store = Path(store).resolve()
    (store / "artifacts").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    uri = f"http://{HOST}:{port}"
    if is_up(uri):
        raise ServerError(f"port {port} already has a server ({uri}); stop it or pick --port")
    # Runs already in the store keep their file:// artifact locations; experiments the server
    # creates get mlflow-artifacts:/ ones, uploaded through the server to store/artifacts.
    # One uvicorn worker (its thread pool serves a few parallel jobs) and no GenAI job runner
    # (7 huey consumers we never use): 2 processes instead of 15 that each import MLflow, and
    # a start 2-3x quicker on a loaded machine (bench/RESULTS.md).
    # The store's URI goes in the environment, not on the command line that `ps` shows every
    # user of the machine (a database's URI may name its user and host).
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--artifacts-destination", str(store / "artifacts"),
        "--host", HOST, "--port", str(port), "--workers", "1",
        *(["--app-name", basic_auth.APP] if auth else []),
    ]  # fmt: skip
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": backend_uri or sqlite_uri(store / "mlflow.db"),
        **(basic_auth.server_environment(store, uri) if auth else {}),
        **(env or {}),
    }
    log_path = store / "server.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    try:
        # A server that cannot start (port taken, bad store) exits, and that is reported at
        # once; the deadline only bounds a start that hangs, so it can be generous.
        deadline = time.monotonic() + start_timeout
        while not is_up(uri):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise ServerError(
                    f"MLflow server on {uri} did not start (see {log_path}):\n" + "\n".join(tail)
                )
            time.sleep(0.5)
        # Runs whose process was killed while the server was down would stay RUNNING.
        with credentials.as_user(basic_auth.admin_credentials(store)) if auth else nullcontext():
            orphans.end_orphans_in_store(uri)
        yield uri
    finally:
        stop_group(proc)


def run_command(command: list[str], uri: str, env: dict[str, str] | None = None) -> int:
    """Run CMD against the server (with `env` added to its environment) and return its exit
    code. A Ctrl-C reaches CMD from the terminal and SIGTERM is passed on, so CMD can mark its
    runs KILLED while the server is still there to record it. The server stops when CMD ends,
    so the runs' links point at the local store's `make ui` instead (`env` may say otherwise)."""
    env = {**os.environ, UI_URL_ENV: LOCAL_UI, **(env or {}), "MLFLOW_TRACKING_URI": uri}
    child = subprocess.Popen(command, env=env)
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda sig, _: child.send_signal(sig)),
    }
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        usage="%(prog)s [--store DIR] [--port N] [--auth] [-- CMD ...]",
    )
    parser.add_argument(
        "--store", type=Path, default=DEFAULT_STORE,
        help="directory holding mlflow.db and artifacts/ (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--auth", action="store_true",
                        help="users and passwords (MLflow's basic-auth app, users in STORE/auth/); "
                        "the admin's credentials go to STORE/auth/credentials")  # fmt: skip
    args, command = options_and_the_rest(parser, argv)
    interrupts.handle()
    try:
        with tracking_server(args.store, args.port or None, auth=args.auth) as uri:
            ui = f"{uri}/#/experiments?workflowType=machine_learning"
            print(f"MLflow tracking server and UI: {ui}  (store {args.store})", flush=True)
            admin = basic_auth.admin_credentials(args.store)
            if args.auth:
                print(f"Users and passwords on; the admin's credentials: {admin} (mode 600). "
                      f"Add a user: python -m mnist_exp.users NAME READ|EDIT|MANAGE",
                      flush=True)  # fmt: skip
            if command:
                return run_command(command, uri, credentials.environment(admin) if args.auth
                                   else None)  # fmt: skip
            print("Ctrl-C stops it. Runs log to it with tracking=server "
                  f"or MLFLOW_TRACKING_URI={uri}" + (f", after `set -a; . {admin}; set +a`"
                  if args.auth else ""), flush=True)  # fmt: skip
            while True:
                signal.pause()
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("MLflow server stopped", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
