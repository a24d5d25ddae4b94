"""A tracking server that goes away mid-sweep: a restart loses nothing, a longer outage ends the
sweep with one line, and a re-run once the server is back finishes the job. A real `mlflow
server`, stopped and started again on the same port over the same store."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mnist_exp.server import tracking_server
from mnist_exp.tracking.loopback import free_port
from tests.helpers import cli_env, parent_and_children, runs_in

pytestmark = pytest.mark.slow

EPOCHS = 20
SWEEP = ["-m", "tracking=server", "model.hidden=8,16", "data.limit_train=1000",
         "data.limit_test=200", f"train.epochs={EPOCHS}"]  # fmt: skip


# The long outage is one longer than this, not the default 90 s, to keep the suite quick; a
# restart (30-60 s on a loaded 2-core machine) gets the default.
PATIENCE = 10


def start_sweep(uri: str, tmp_path, mnist_dir, patience: int | None = None) -> subprocess.Popen:
    env = {"MLFLOW_TRACKING_URI": uri}
    if patience:
        env["MNIST_EXP_SERVER_PATIENCE"] = str(patience)
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_exp.run", *SWEEP, f"hydra.sweep.dir={tmp_path}/multirun"],
        cwd=tmp_path, env=cli_env(mnist_dir, env), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for(client: MlflowClient, proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 300
    while not ready(runs_in(client)):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def training(runs, n: int = 1) -> bool:
    """Whether at least n child runs have logged an epoch."""
    return sum("val_accuracy" in r.data.metrics and r.data.tags.get("mlflow.parentRunId")
               is not None for r in runs) >= n  # fmt: skip


def epochs_logged(client: MlflowClient, run) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy"))


def test_a_server_restart_mid_sweep_loses_nothing(store, tmp_path, mnist_dir):
    port = free_port()
    with tracking_server(store.root, port) as uri:
        client = MlflowClient(uri)
        proc = start_sweep(uri, tmp_path, mnist_dir)
        wait_for(client, proc, training, "the first job to train")
    stopped = time.monotonic()
    try:
        time.sleep(5)  # and the restart itself takes 10-60 s, depending on the load
        with tracking_server(store.root, port):
            outage = time.monotonic() - stopped
            output, _ = proc.communicate(timeout=600)
            runs = runs_in(client)
            parent, children = parent_and_children(runs)
            histories = [epochs_logged(client, child) for child in children]
    finally:
        proc.kill()
    print(f"server away for {outage:.0f}s")
    assert proc.returncode == 0, output
    assert len(runs) == 3, output
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    assert histories == [list(range(EPOCHS))] * 2  # every epoch of both jobs, none lost
    assert all("test_accuracy" in c.data.metrics for c in children)
    assert "is not answering" in output and "Traceback" not in output


def test_a_long_outage_ends_the_sweep_in_one_line_and_a_rerun_finishes_it(
    store, tmp_path, mnist_dir
):
    port = free_port()
    with tracking_server(store.root, port) as uri:
        client = MlflowClient(uri)
        proc = start_sweep(uri, tmp_path, mnist_dir, PATIENCE)
        # The first job is FINISHED and the second under way when the server goes.
        wait_for(client, proc, lambda runs: training(runs, 2), "the second job to train")
    stopped = time.monotonic()
    try:
        output, _ = proc.communicate(timeout=400)
    finally:
        proc.kill()
    took = time.monotonic() - stopped
    print(f"sweep ended {took:.0f}s after the server stopped")
    assert proc.returncode == 1, output
    assert took < PATIENCE + 40, output  # not MLflow's 4 minutes per request, again and again
    (line,) = [line for line in output.splitlines() if "stopped answering" in line]
    assert line.startswith(f"MLflow tracking server {uri} stopped answering"), line
    assert f"for over {PATIENCE}s" in line
    assert "run the same command again" in line
    assert "Traceback" not in output, output

    with tracking_server(store.root, port):
        rerun = start_sweep(uri, tmp_path, mnist_dir)
        output, _ = rerun.communicate(timeout=600)
        runs = runs_in(client)
    assert rerun.returncode == 0, output
    assert "Skipping 'dense-h8" in output  # finished before the outage, not trained again
    assert "RUNNING" not in {r.info.status for r in runs}, [(r.info.run_name, r.info.status)
                                                           for r in runs]  # fmt: skip
    finished = [r for r in runs if r.info.status == "FINISHED" and "model.hidden" in r.data.params]
    assert sorted(int(r.data.params["model.hidden"]) for r in finished) == [8, 16]


def test_mlflow_retries_a_user_set_to_zero_change_nothing_in_how_a_sweep_ends(
    store, tmp_path, mnist_dir
):
    """MLflow's own variables keep MLflow's meaning. MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 once
    read as "we gave up on the server": the sweep skipped its summary, left its parent run
    RUNNING and exited without its exit handlers."""
    short = [arg if not arg.startswith("train.epochs=") else "train.epochs=1" for arg in SWEEP]
    with tracking_server(store.root) as uri:
        done = subprocess.run(
            [sys.executable, "-m", "mnist_exp.run", *short, f"hydra.sweep.dir={tmp_path}/multirun"],
            cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600,
            env=cli_env(mnist_dir, {"MLFLOW_TRACKING_URI": uri,
                                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}),
        )  # fmt: skip
        client = MlflowClient(uri)
        parent, children = parent_and_children(runs_in(client))
        summary = client.download_artifacts(parent.info.run_id, "sweep_summary.txt", str(tmp_path))
    assert done.returncode == 0, done.stdout
    assert "Sweep FINISHED" in done.stdout and "2 finished, 0 failed" in done.stdout, done.stdout
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    assert Path(summary).read_text().startswith(f"Sweep FINISHED (parent run {parent.info.run_id})")


@pytest.fixture
def fresh_outage_state(monkeypatch):
    """This process's outage state and logging as before any server went away, and put back
    after: retry_patiently and given_up change them for the rest of a process."""
    import logging

    from mnist_exp.tracking import outage

    for name, value in (("_away_since", None), ("_said_away", False), ("_given_up_on", None)):
        monkeypatch.setattr(outage, name, value)
    for name in outage.retry_settings():
        monkeypatch.delenv(name, raising=False)
    loggers = [logging.getLogger(name) for name in (outage.RETRY_LOGGER, outage.ASYNC_LOGGER)]
    before = [(list(logger.filters), logger.level) for logger in loggers]
    yield outage
    for logger, (filters, level) in zip(loggers, before, strict=True):
        logger.filters[:] = filters
        logger.setLevel(level)


def test_a_request_not_retried_still_gets_the_rest_of_the_patience(fresh_outage_state, monkeypatch):
    """With the user's MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 a request fails at once; the server
    still gets our patience before the run gives up on it (and with our own retry settings,
    which outlast the patience, nothing more is waited)."""
    import mlflow

    outage = fresh_outage_state
    monkeypatch.setenv("MNIST_EXP_SERVER_PATIENCE", "4")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        waited = {}
        for retries in ("0", outage.retry_settings()["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]):
            monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", retries)
            monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
            started = time.monotonic()
            lost = outage.lost_server(ConnectionError("a request that failed"))
            waited[retries] = time.monotonic() - started
            assert isinstance(lost, outage.TrackingServerLost), lost
    finally:
        mlflow.set_tracking_uri(previous)
    assert 3.5 < waited["0"] < 15, waited
    assert waited["3"] < 2, waited  # ceil(log2(4 + 2)) retries: 6 s of MLflow's own, > 4


def test_a_request_mlflow_retries_through_a_restart_says_the_server_is_away(
    store, fresh_outage_state, caplog
):
    """A request in flight as the server goes is retried by MLflow until it is back, out of
    reach of our own checks: once the sweep stood still through a restart with nothing said."""
    import logging
    import threading

    outage = fresh_outage_state
    port = free_port()
    with tracking_server(store.root, port) as uri:
        MlflowClient(uri).create_experiment("restarted")
    back, done = threading.Event(), threading.Event()

    def restart() -> None:
        time.sleep(3)
        with tracking_server(store.root, port):
            back.set()
            done.wait(60)

    restarter = threading.Thread(target=restart)
    restarter.start()
    try:
        outage.retry_patiently(uri)
        with caplog.at_level(logging.INFO):
            found = MlflowClient(uri).get_experiment_by_name("restarted")
    finally:
        done.set()
        restarter.join()
    assert back.is_set() and found is not None
    away = [r.getMessage() for r in caplog.records if "is not answering" in r.getMessage()]
    assert away == [
        f"MLflow server {uri} is not answering ([Errno 111] Connection refused); "
        f"its requests are retried, for up to {outage.patience_seconds()}s"
    ], away
    assert "Retrying" not in caplog.text  # urllib3's own warning, one per retry, stays quiet


def test_an_outage_seen_only_through_retries_leaves_the_next_one_its_whole_patience(
    fresh_outage_state, monkeypatch
):
    """Nothing sees a retried-through outage end, so it must not start the patience's clock: a
    clock left running since then gave up at once on the next outage."""
    import logging

    outage = fresh_outage_state
    monkeypatch.setenv("MNIST_EXP_SERVER_PATIENCE", "2")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    outage.retry_patiently(uri)
    # urllib3's own call, as MLflow's request session makes it at a retry
    logging.getLogger(outage.RETRY_LOGGER).warning(
        "Retrying (%r) after connection broken by '%r': %s",
        "Retry(total=6)", "NewConnectionError(...)", "/api/2.0/mlflow/runs/create",
    )  # fmt: skip
    time.sleep(3)  # longer than the patience; the server came back, unseen, and went again
    assert outage.still_away(uri, "waiting for it") is True  # not TrackingServerLost
    time.sleep(3)
    with pytest.raises(outage.TrackingServerLost):
        outage.still_away(uri, "waiting for it")
