"""Serving a tracked model: MLflow's scoring server, started as a user would, answers a real HTTP
request with the right digit, and is gone after Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from mnist_exp.serve import is_serving
from mnist_exp.tracking.loopback import free_port
from tests.helpers import LIBRARY_LINES, Store, cli_env, default_sigint, run_module


@pytest.mark.slow
def test_a_served_model_answers_a_request_for_an_mnist_digit(
    tiny_sweep: Store, tiny_model_uri, confident_digits, mnist, mnist_dir, tmp_path
):
    index = confident_digits[0]
    env = cli_env(mnist_dir)
    # The body exactly as the README makes it: python -m mnist_exp.serve --request N
    body = run_module("mnist_exp.serve", "--request", str(index), cwd=tmp_path, env=env,
                      merge=False)  # fmt: skip
    assert body.returncode == 0, body.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mnist_exp.serve", "--model", tiny_model_uri, "--port", str(port),
         "--tracking-uri", tiny_sweep.uri],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=default_sigint,
    )  # fmt: skip
    scoring_server = [psutil.Process(server.pid)]
    try:
        seen = []  # until the line it prints once the server answers
        while not (seen and seen[-1].startswith("Serving ")) and server.poll() is None:
            seen.append(server.stdout.readline())
        assert seen[-1].startswith(f"Serving {tiny_model_uri} on {url}/invocations"), seen
        scoring_server += scoring_server[0].children(recursive=True)  # mlflow, uvicorn
        request = urllib.request.Request(
            f"{url}/invocations", data=body.stdout.encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        for _ in range(10):
            with urllib.request.urlopen(request, timeout=60) as response:
                (probabilities,) = json.load(response)["predictions"]
        assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1, abs=1e-3)
        assert probabilities.index(max(probabilities)) == mnist.y_test[index]
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C, as the terminal sends it
        try:
            rest, _ = server.communicate(timeout=90)
        finally:  # whatever happened, nothing is left running
            for proc in scoring_server:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
    assert server.returncode == 0, rest
    assert "Scoring server stopped" in rest
    assert "━" not in rest and "/step" not in rest  # ten requests, no progress bar in the log
    assert not LIBRARY_LINES.search("".join(seen) + rest), LIBRARY_LINES.search(
        "".join(seen) + rest
    )
    deadline = time.monotonic() + 30  # uvicorn may still be finishing its shutdown
    while any(map(is_alive, scoring_server)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(map(is_alive, scoring_server)), scoring_server
    assert not is_serving(url)


def is_alive(proc: psutil.Process) -> bool:
    """Running, not just waiting for its parent to collect its exit status (a zombie)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_an_unknown_model_is_one_clear_line_and_no_server(store: Store, mnist_dir, tmp_path):
    store.create()
    done = run_module("mnist_exp.serve", "--model", "models:/nope/latest", "--tracking-uri",
                      store.uri, cwd=tmp_path, env=cli_env(mnist_dir), merge=False)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: cannot load model 'models:/nope/latest': Registered Model with name=nope not found"
    ), done.stderr
