"""The tracking server the parallel targets and tests start: up on 127.0.0.1, then really gone."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from mnist_exp import server

pytestmark = pytest.mark.slow


def test_server_serves_while_a_command_runs_and_is_stopped_after(tmp_path):
    probe = (
        "import os, urllib.request; uri = os.environ['MLFLOW_TRACKING_URI']; "
        "print('URI', uri, urllib.request.urlopen(uri + '/health').status); raise SystemExit(3)"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mnist_exp.server", "--store", str(tmp_path / "store"),
         "--port", "0", "--", sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # the command's own exit code
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("URI ")]
    _, uri, status = line.split()
    assert uri.startswith("http://127.0.0.1:") and status == "200"
    assert not server.is_up(uri)  # stopped with the command
    assert (tmp_path / "store" / "mlflow.db").is_file()


def test_server_on_a_taken_port_fails_with_the_reason(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "mnist_exp.server", "--store", str(tmp_path), "--port",
             str(port)],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"error: MLflow server on http://127.0.0.1:{port} did not start" in done.stderr
    assert "Traceback" not in done.stderr
