"""A sweep on a Ray cluster (hydra/launcher=ray_cluster): a real local head on 127.0.0.1, the
jobs as Ray tasks, every run logged through one MLflow server and nested under the sweep."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mnist_exp.server import free_port, tracking_server
from tests.helpers import TINY, artifact_text, parent_and_children, runs_in

pytestmark = pytest.mark.slow

# Ray's single-node mode: every listener on 127.0.0.1 (otherwise Ray swaps 127.0.0.1 for the
# machine's outward address), and no usage reports sent anywhere.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture
def ray_head(tmp_path: Path):
    """`ray start --head` in the foreground (--block), so stopping it is one signal to one process,
    which takes its whole cluster down; `ray stop` would kill every Ray process on the machine."""
    ray = Path(sys.executable).parent / "ray"
    address = f"127.0.0.1:{free_port()}"
    # Ray keeps unix sockets in its temp dir; pytest's tmp paths can be too long for them.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    env = {**os.environ, **RAY_ENV}
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={address.split(':')[1]}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([str(ray), "status", "--address", address], env=env,
                             capture_output=True).returncode != 0:  # fmt: skip
            assert head.poll() is None and time.monotonic() < deadline, "Ray head did not start"
            time.sleep(1)
        yield address
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_sweep_on_a_ray_cluster_logs_every_job_under_one_parent(run_cli, store, ray_head):
    with tracking_server(store.root) as uri:
        started = time.monotonic()
        done = run_cli("-m", "hydra/launcher=ray_cluster", "tracking=server", "model.hidden=8,16",
                       *TINY, env={**RAY_ENV, "RAY_ADDRESS": ray_head,
                                   "MLFLOW_TRACKING_URI": uri})  # fmt: skip
        seconds = time.monotonic() - started
        assert done.returncode == 0, done.stdout
        client = MlflowClient(uri)
        runs = runs_in(client)
        parent, children = parent_and_children(runs)
        logs = [artifact_text(client, child, "run.log") for child in children]
    print(f"Ray sweep of 2 tiny jobs: {seconds:.1f} s")
    assert len(runs) == 3
    assert parent.info.status == "FINISHED"
    assert sorted(int(c.data.params["model.hidden"]) for c in children) == [8, 16]
    assert all(c.info.status == "FINISHED" and "test_accuracy" in c.data.metrics
               for c in children)  # fmt: skip
    assert all("TensorFlow threads: 1" in log for log in logs)  # the core Ray reserved per job
