"""MLflow server start-up: MLflow's defaults against how mnist_exp.server starts it.

    .venv/bin/python bench/server_startup.py --rounds 2

Each start serves a fresh SQLite store on 127.0.0.1 and is timed until /health answers, then
stopped; the two ways alternate so that both see the same load. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from mnist_exp.server import is_up
from mnist_exp.tracking.loopback import HOST, free_port

WAYS = {
    "mlflow defaults (4 workers, job runner)": ([], {}),
    "mnist_exp.server (--workers 1, no job runner)": (
        ["--workers", "1"], {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    ),
}  # fmt: skip


def start_seconds(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Seconds until /health answers, and how many processes the server then runs."""
    with tempfile.TemporaryDirectory() as store:
        port = free_port()
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
             f"sqlite:///{store}/mlflow.db", "--artifacts-destination", f"{store}/artifacts",
             "--host", HOST, "--port", str(port), *args],
            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            while not is_up(f"http://{HOST}:{port}"):
                time.sleep(0.2)
            seconds = time.monotonic() - started
            group = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
            return seconds, len(group.stdout.split())
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print("| round | how | seconds to /health | processes |\n|---:|---|---:|---:|")
    for n in range(1, rounds + 1):
        for name, (args, env) in WAYS.items():
            seconds, processes = start_seconds(args, env)
            print(f"| {n} | {name} | {seconds:.1f} | {processes} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
