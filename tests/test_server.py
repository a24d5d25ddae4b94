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


def http_status(url: str, method: str = "GET", user: str | None = None, password: str = "",
                body: dict | None = None) -> int:  # fmt: skip
    """What the server answers a plain HTTP request (curl -u USER:PASSWORD -X METHOD URL)."""
    import base64
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_a_server_with_users_lets_in_only_them_and_a_reader_only_reads(tmp_path, mnist_dir):
    import stat
    import time

    from mnist_exp.tracking import credentials
    from tests.helpers import TINY, cli_env, hydra_dirs, run_module

    store = tmp_path / "store"
    with server.tracking_server(store, auth=True) as uri:
        admin_file = store / "auth" / "credentials"
        assert stat.S_IMODE(admin_file.stat().st_mode) == 0o600
        admin = credentials.read(admin_file)
        user, password = admin["MLFLOW_TRACKING_USERNAME"], admin["MLFLOW_TRACKING_PASSWORD"]
        assert user == "admin" and len(password) >= 24 and password != "password1234"
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert http_status(search) == 401
        assert http_status(search, user="admin", password="password1234") == 401
        assert http_status(search, user=user, password=password) == 200

        # A run without credentials, or with a wrong password: one line, in seconds.
        env = cli_env(mnist_dir, {"MLFLOW_TRACKING_URI": uri})
        wrong = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "wrong"}
        refusals = [({}, "refused a request without credentials (HTTP 401"),
                    (wrong, "refused user 'admin' (HTTP 401: wrong username or")]  # fmt: skip
        for extra, said in refusals:
            started = time.monotonic()
            done = run_module("mnist_exp.run", "tracking=server", *TINY, *hydra_dirs(tmp_path),
                              cwd=tmp_path, env={**env, **extra})  # fmt: skip
            assert done.returncode != 0 and f"MLflow tracking server {uri} {said}" in done.stdout
            assert "Traceback" not in done.stdout and time.monotonic() - started < 60

        # The admin's credentials file (its path, as Ray's tasks get it): a sweep finishes.
        admin_env = {**env, "MNIST_EXP_CREDENTIALS": str(admin_file)}
        done = run_module("mnist_exp.run", "-m", "tracking=server", "model.hidden=8,16", *TINY,
                          *hydra_dirs(tmp_path), cwd=tmp_path, env=admin_env)  # fmt: skip
        assert done.returncode == 0, done.stdout
        assert "Sweep FINISHED" in done.stdout and "2 finished, 0 failed" in done.stdout

        # A reader, added by the command: it reads the runs, and can neither create nor delete one.
        added = run_module("mnist_exp.users", "reader", "READ", "--uri", uri, "--store",
                           str(store), cwd=tmp_path, env=cli_env(mnist_dir))  # fmt: skip
        assert added.returncode == 0, added.stdout
        reader_file = store / "auth" / "reader.credentials"
        assert f"User 'reader' has READ on experiment 'mnist'; credentials in {reader_file}" in (
            added.stdout
        )
        assert stat.S_IMODE(reader_file.stat().st_mode) == 0o600
        reader = credentials.read(reader_file)
        as_reader = {"user": "reader", "password": reader["MLFLOW_TRACKING_PASSWORD"]}
        with credentials.as_user(admin_file):
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name("mnist").experiment_id
            run_id = client.search_runs([experiment])[0].info.run_id
        api = f"{uri}/api/2.0/mlflow"
        assert http_status(f"{api}/runs/get?run_id={run_id}", **as_reader) == 200
        assert http_status(f"{api}/runs/create", "POST", body={"experiment_id": experiment},
                           **as_reader) == 403  # fmt: skip
        assert http_status(f"{api}/runs/delete", "POST", body={"run_id": run_id},
                           **as_reader) == 403  # fmt: skip
        reader_env = {**env, "MNIST_EXP_CREDENTIALS": str(reader_file)}
        done = run_module("mnist_exp.run", "tracking=server", *TINY, *hydra_dirs(tmp_path),
                          cwd=tmp_path, env=reader_env)  # fmt: skip
        assert done.returncode != 0
        assert f"MLflow tracking server {uri} refused user 'reader' a new run" in done.stdout
        assert "Traceback" not in done.stdout
        # compare reads the sweep as the reader
        compared = run_module("mnist_exp.compare", "--tracking-uri", uri, "--out",
                              str(tmp_path / "compare"), cwd=tmp_path, env=reader_env)  # fmt: skip
        assert compared.returncode == 0, compared.stdout
        assert "this user may only read it (READ)" in compared.stdout
        assert "dense-h8" in compared.stdout and "dense-h16" in compared.stdout, compared.stdout
