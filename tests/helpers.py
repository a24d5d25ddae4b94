"""What several test modules share: a tmp MLflow store, the real CLI in a subprocess, and what a
user looks for in what it recorded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from mnist_exp.composition import compose_overrides


def compose_config(*overrides: str, hydra: bool = False) -> DictConfig:
    """What `python -m mnist_exp.run OVERRIDES` composes, through Hydra's compose API."""
    return compose_overrides(overrides, hydra_config=hydra)


# Variables that would send a test's runs somewhere other than its own tmp store.
# MLflow sets MLFLOW_EXPERIMENT_ID in a process that called set_experiment (the in-process API
# tests), and a child process would inherit it.
LEAKY_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
             "MNIST_EXP_PARENT_RUN_ID", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
             "MNIST_EXP_CREDENTIALS")  # fmt: skip

# The libraries' lines a console must not show (TensorFlow 2.21 printed the first ones on every
# CPU machine before training.native_logs).
LIBRARY_LINES = re.compile(
    r"absl::InitializeLog|I0000 .*\] oneDNN custom operations|cudart_stub\.cc|cuInit|"
    r"triggered tf\.function retracing|Creating initial MLflow database tables|View run "
)

# A run of seconds: enough data and epochs to exercise everything, not to learn well.
TINY = ["data.limit_train=1000", "data.limit_test=200", "train.epochs=1"]

# pip settings under which the PyPI mirror cannot be reached, at once.
NO_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
            "PIP_FIND_LINKS": "", "PIP_NO_CACHE_DIR": "1"}  # fmt: skip


@dataclass
class Store:
    """An MLflow store in a tmp dir, and the overrides that send a run there."""

    root: Path

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root}/mlflow.db"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def overrides(self) -> list[str]:
        return [f"tracking.uri={self.uri}", f"tracking.artifact_location={self.root}/artifacts",
                f"tracking.checkpoint_dir={self.checkpoints}"]  # fmt: skip

    def create(self) -> None:
        """Create the database now: two processes creating one SQLite store race on its schema."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.client().search_experiments()

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def runs(self, experiment: str = "mnist"):
        return runs_in(self.client(), experiment)


def runs_in(client, experiment: str = "mnist") -> list:
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


def parent_and_children(runs) -> tuple:
    """A store's one sweep: its parent run, and its child runs in the order they started."""
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, sorted(children, key=lambda r: r.info.start_time)


def artifact_text(client, run, path: str) -> str:
    return open(client.download_artifacts(run.info.run_id, path)).read()


def assert_clean_error(done: subprocess.CompletedProcess, *needles: str) -> None:
    """A failed command that says what is wrong in its own words, not in a traceback."""
    assert done.returncode != 0
    for needle in needles:
        assert needle in done.stdout, done.stdout
    assert "Traceback" not in done.stdout, done.stdout


def cli_env(mnist_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    return {**env, "MNIST_EXP_DATA_DIR": str(mnist_dir), **(extra or {})}


def run_module(module: str, *args: str, cwd: Path, env: dict[str, str], merge=True, timeout=600):
    """`python -m MODULE ARGS` as a user runs it; merge=True puts stderr into `.stdout`."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge else subprocess.PIPE,
        text=True,
        timeout=timeout,
    )


def default_sigint() -> None:
    """For Popen's preexec_fn: a shell that starts a job in the background (`make test &`,
    some CI runners) leaves SIGINT ignored in it and its children, and Python then installs no
    KeyboardInterrupt handler. The tests that press Ctrl-C need what a terminal gives."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def checkpointed_epochs(checkpoint_dir: Path) -> int:
    """The epochs a run's checkpoint holds (its manifest's `epoch`), 0 if none."""
    try:
        return json.loads((checkpoint_dir / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def hydra_dirs(root: Path) -> list[str]:
    return [f"hydra.run.dir={root}/outputs", f"hydra.sweep.dir={root}/multirun"]
