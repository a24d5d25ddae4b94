"""Parallel sweeps: joblib workers logging through a real MLflow server, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from mnist_exp.server import tracking_server
from mnist_exp.sweeps.launchers import cores_per_job
from tests.helpers import (
    TINY,
    artifact_text,
    assert_clean_error,
    cli_env,
    default_sigint,
    parent_and_children,
    runs_in,
)

WIDTHS = [8, 12, 16, 20, 24, 32]


@pytest.mark.parametrize(
    ("launcher", "cores", "threads"),
    [({}, 8, None), ({"n_jobs": 1}, 8, None), ({"n_jobs": 2}, 8, 4), ({"n_jobs": 2}, 2, 1),
     ({"n_jobs": 3}, 2, 1), ({"n_jobs": -1}, 8, 1), ({"n_jobs": -2}, 8, 1),
     ({"ray": {"remote": {"num_cpus": 3}}}, 8, 3), ({"ray": {"remote": {}}}, 8, None)],
)  # fmt: skip
def test_each_parallel_job_gets_its_share_of_the_cores(monkeypatch, launcher, cores, threads):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert cores_per_job(OmegaConf.create(launcher)) == threads


@pytest.mark.slow
def test_six_jobs_on_two_workers_are_six_finished_runs_under_one_parent(run_cli, store):
    with tracking_server(store.root) as uri:
        done = run_cli("-m", "hydra/launcher=parallel", "tracking=server",
                       f"model.hidden={','.join(map(str, WIDTHS))}", *TINY,
                       env={"MLFLOW_TRACKING_URI": uri})  # fmt: skip
        assert done.returncode == 0, done.stdout
        client = MlflowClient(uri)
        runs = runs_in(client)
        parent, children = parent_and_children(runs)
        logs = [artifact_text(client, child, "run.log") for child in children]

    assert len(runs) == 7
    assert parent.info.status == "FINISHED"
    assert sorted(int(c.data.params["model.hidden"]) for c in children) == WIDTHS  # no repeats
    assert all(c.info.status == "FINISHED" and "test_accuracy" in c.data.metrics
               for c in children)  # fmt: skip
    assert "6 finished, 0 failed, 0 killed, 0 skipped" in done.stdout
    assert "][ERROR] - " not in done.stdout and "Traceback" not in done.stdout
    # One link per run, ours, to the server the runs are on; none of MLflow's own.
    assert "View run" not in done.stdout
    assert all(f"Run: {uri}/#/experiments/" in log for log in logs)
    # Two at a time, for real, each with half of this machine's cores.
    spans = sorted((c.info.start_time, c.info.end_time) for c in children)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))
    threads = max(1, os.cpu_count() // 2)
    assert all(f"JAX threads: {threads}" in log for log in logs)


@pytest.mark.slow
def test_parallel_launcher_refuses_to_write_a_sqlite_store(run_cli, store):
    done = run_cli("-m", "hydra/launcher=parallel", "model.hidden=8,16", *TINY, *store.overrides)
    assert_clean_error(done, "hydra/launcher=parallel", "database is locked", "make sweep-parallel")
    assert "Training" not in done.stdout
    assert store.runs() == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_parallel_sweep_leaves_no_run_running(store, tmp_path, mnist_dir, sig):
    """Ctrl-C reaches every process of the terminal's group; `kill` reaches only the sweep's own
    process, whose launcher then stops its workers. Either way no run may stay RUNNING."""
    with tracking_server(store.root) as uri:
        client = MlflowClient(uri)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mnist_exp.run", "-m", "hydra/launcher=parallel",
             "tracking=server", "model.hidden=16,32", "data.limit_train=2000",
             "train.epochs=1000", "train=literal", f"hydra.sweep.dir={tmp_path}/multirun"],
            cwd=tmp_path, env=cli_env(mnist_dir, {"MLFLOW_TRACKING_URI": uri}), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=default_sigint,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and proc.poll() is None:
                training = [r for r in runs_in(client) if "val_accuracy" in r.data.metrics]
                if len(training) == 2:
                    break  # both jobs are under way
                time.sleep(1)
            assert proc.poll() is None, proc.communicate()[0]
            if sig == signal.SIGINT:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
            # Workers share the sweep's stdout: this returns only once they are gone too.
            output, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        runs = runs_in(client)
    assert len(runs) == 3, output
    assert {r.info.status for r in runs} == {"KILLED"}, output
