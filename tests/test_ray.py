"""A sweep on a Ray cluster (hydra/launcher=ray_cluster): a real local head on 127.0.0.1, the
jobs as Ray tasks, every run logged through one MLflow server and nested under the sweep."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from mnist_exp import team
from mnist_exp.server import tracking_server
from tests.helpers import TINY, artifact_text, parent_and_children, runs_in

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_head():
    with team.ray_head(num_cpus=2) as address:
        yield address


def test_sweep_on_a_ray_cluster_logs_every_job_under_one_parent(run_cli, store, ray_head):
    with tracking_server(store.root) as uri:
        started = time.monotonic()
        done = run_cli("-m", "hydra/launcher=ray_cluster", "tracking=server", "model.hidden=8,16",
                       *TINY, env={**team.RAY_ENV, "RAY_ADDRESS": ray_head,
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
