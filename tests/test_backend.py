"""train.backend: Keras's backend is chosen once per process, and a mix is refused, clearly.

A run on each installed backend, end to end, is tests/test_run.py's
test_run_records_params_metrics_and_artifacts.
"""

from __future__ import annotations

import os

import keras
import pytest

import mnist_exp
from mnist_exp import backend
from mnist_exp.config import ConfigError
from mnist_exp.sweep import check_one_backend
from tests.helpers import LEAKY_ENV, TINY, Store, assert_clean_error

# This process trains on TensorFlow, as pytest imports Keras before any test runs.
assert keras.backend.backend() == "tensorflow"


def test_the_loaded_backend_is_kept_and_another_is_refused_naming_the_key(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    backend.use_backend("tensorflow")  # the one already loaded: nothing to do
    with pytest.raises(backend.BackendAlreadyLoaded) as refused:
        backend.use_backend("jax")
    assert "train.backend=jax" in str(refused.value)
    assert "already runs Keras on tensorflow" in str(refused.value)
    assert os.environ["KERAS_BACKEND"] == "tensorflow"


def test_a_notebook_whose_keras_runs_another_backend_records_nothing(
    monkeypatch, tmp_path, mnist_dir
):
    for name in LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MNIST_EXP_DATA_DIR", str(mnist_dir))
    store = Store(tmp_path / "mlruns")
    with pytest.raises(backend.BackendAlreadyLoaded, match="restart the notebook's kernel"):
        mnist_exp.run_experiment(["train.backend=jax", *TINY, *store.overrides])
    assert store.runs() == []


def test_one_backend_per_sweep():
    check_one_backend({"jax"})
    with pytest.raises(ConfigError, match="this sweep mixes jax and tensorflow"):
        check_one_backend({"tensorflow", "jax"})


@pytest.mark.slow
def test_a_sweep_that_mixes_backends_is_refused_before_anything_trains(run_cli, store):
    done = run_cli("-m", "train.backend=tensorflow,jax", *TINY, *store.overrides)
    assert_clean_error(done, "train.backend: this sweep mixes jax and tensorflow",
                       "sweep each backend separately")  # fmt: skip
    assert "Training" not in done.stdout
    assert store.runs() == []
