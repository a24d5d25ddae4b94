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
        "print('URI', uri, urllib.request.urlopen(uri + '/health').status); "
        "print('LINKS', os.environ['MNIST_EXP_UI_URL']); raise SystemExit(3)"
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
    # So the command's run links point at the local store's `make ui`, not at this server.
    assert "LINKS http://127.0.0.1:5000" in done.stdout
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


def test_parallel_jobs_logging_the_same_new_dataset_all_link_it(tmp_path, mnist, mnist_dir):
    # A Ray sweep once failed a job here: MLflow's store checks for a dataset and inserts it
    # without a lock, so jobs starting together raced on the datasets table's unique key.
    import threading

    import mlflow

    from mnist_exp.tracking import datasets
    from mnist_exp.training.data import prepare

    jobs, rounds = 6, 3
    failures: list[str] = []
    with server.tracking_server(tmp_path / "store") as uri:
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient()
        experiment = client.create_experiment("race")
        run_ids = []
        for size in range(rounds):  # a new subset size is a new dataset digest
            prepared = prepare(mnist, limit_train=10 + size, limit_test=5 + size)
            barrier = threading.Barrier(jobs)

            def job(run_id: str, prepared=prepared, barrier=barrier) -> None:
                with mlflow.start_run(run_id=run_id):  # MLflow's active run is per thread
                    barrier.wait()
                    try:
                        datasets.log_datasets(prepared, mnist_dir)
                    except Exception as error:  # noqa: BLE001 - collected for the assert
                        failures.append(str(error)[:200])

            batch = [client.create_run(experiment).info.run_id for _ in range(jobs)]
            threads = [threading.Thread(target=job, args=(run_id,)) for run_id in batch]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            run_ids += batch
        assert failures == []
        for run_id in run_ids:
            inputs = client.get_run(run_id).inputs.dataset_inputs
            assert sorted(i.tags[0].value for i in inputs) == ["test", "training"]
