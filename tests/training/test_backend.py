"""train.backend: Keras's backend is chosen once per process, and a mix is refused, clearly.

A run on each installed backend, end to end, is tests/test_run.py's
test_run_records_params_metrics_and_artifacts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import keras
import pytest

import mnist_exp
from mnist_exp.config import ConfigError
from mnist_exp.sweeps.job import check_one_backend
from mnist_exp.training import backend
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


def printed_json(script: str) -> dict:
    """What a fresh Python process running `script` printed last, as JSON."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_one_backend_per_sweep():
    check_one_backend({"jax"})
    with pytest.raises(ConfigError, match="this sweep.s jobs train on jax and tensorflow"):
        check_one_backend({"tensorflow", "jax"})


@pytest.mark.slow
def test_a_sweep_that_mixes_backends_is_refused_before_anything_trains(run_cli, store):
    done = run_cli("-m", "train.backend=tensorflow,jax", *TINY, *store.overrides)
    assert_clean_error(done, "train.backend: this sweep's jobs train on jax and tensorflow",
                       "add hydra/launcher=together")  # fmt: skip
    assert "Training" not in done.stdout
    assert store.runs() == []


# Fits one model twice on JAX, with Keras 3.15's Python loop over steps_per_execution and with
# jax_steps' scan, on 1610 training images: 50 full batches and a short one, 7 steps per call,
# so calls of 7, a call that ends in the short batch, and one that starts the next epoch.
# First the model is built after our seeding and logged to MLflow, neither of which may import
# TensorFlow (seconds of a JAX run's CPU), then built after Keras's own seeding.
SAME_STEPS = """
import collections, json, os, sys, tempfile
from mnist_exp.training import backend
backend.use_backend("jax", threads=1)
backend.load_keras()
import keras, mlflow, numpy as np
out = {"left_out": sorted({"sklearn", "tensorflow"} & set(sys.modules))}
from mnist_exp.training import models, train
from mnist_exp.tracking import tracked_model
from mnist_exp.config import DenseConfig, TrainConfig
train.set_seed(1)
model = models.build_model(DenseConfig(hidden=16))
out["ours"] = [w.tolist() for w in model.get_weights()]
mlflow.set_tracking_uri(f"sqlite:///{tempfile.mkdtemp()}/mlflow.db")
x = np.zeros((2, 28, 28, 1), np.float32)
with mlflow.start_run() as run:
    tracked_model.log_model(model, x, model.predict(x, verbose=0))
out["tensorflow"] = "tensorflow" in sys.modules
logged = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(x)
out["logged"] = np.allclose(logged, model.predict(x, verbose=0))
x = np.random.default_rng(0).random((2013, 28, 28, 1), dtype=np.float32)
y = keras.utils.to_categorical(np.arange(2013) % 10, 10)
for scanned in (False, True):
    keras.utils.set_random_seed(1)
    model = models.build_model(DenseConfig(hidden=16))
    out.setdefault("keras", [w.tolist() for w in model.get_weights()])
    train.compile_model(model, TrainConfig(epochs=2, steps_per_execution=7), 1610)
    if not scanned:  # Keras's own loop back
        model.make_train_function = type(model).make_train_function.__get__(model)
    history = model.fit(x, y, batch_size=32, epochs=2, validation_split=0.2, verbose=0).history
    weights = [w.tolist() for w in model.get_weights()]
    out[str(scanned)] = {"history": history, "weights": weights,
                         "scans": model.make_train_function.__name__}
tasks = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
out["xla_threads"] = collections.Counter(tasks)["tf_XLAEigen"]  # XLA's CPU pool
out["threads_logged"] = train.limit_threads(None)
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="the jax extra is not installed"
)
def test_on_jax_threads_hold_no_tensorflow_loads_and_scanned_steps_match_keras():
    out = printed_json(SAME_STEPS)
    assert out["left_out"] == []  # Keras loaded without scikit-learn or TensorFlow
    assert out["xla_threads"] == out["threads_logged"] == 1  # train.threads=1 holds on JAX
    assert out["ours"] == out["keras"]  # the same initial weights from the same seed
    assert out["tensorflow"] is False
    assert out["logged"] is True  # and the model logged without it loads back and predicts
    loop, scan = out["False"], out["True"]
    assert scan["scans"] == "_make_scanned_train_function" != loop["scans"]
    assert scan["history"] == loop["history"]
    assert scan["weights"] == loop["weights"]
    assert len(scan["history"]["loss"]) == 2


# Keras on TensorFlow, loaded as a run loads it, then what a run does that touches the left-out
# modules' importers: a fit and a prediction, and scikit-learn imported afterwards as usual.
TENSORFLOW_LOAD = """
import json, sys
from mnist_exp.training import backend
backend.use_backend("tensorflow")
backend.load_keras()
import keras, numpy as np
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
model.compile("adam", "categorical_crossentropy")
model.fit(np.ones((8, 4)), np.eye(2)[[0, 1] * 4], epochs=1, verbose=0)
out = {"left_out": sorted({"sklearn", "jax"} & set(sys.modules))}
out["predicts"] = model.predict(np.ones((1, 4)), verbose=0).shape == (1, 2)
import sklearn
out["sklearn"] = bool(sklearn.__version__)
out["backend"] = keras.backend.backend()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_keras_loads_on_tensorflow_without_scikit_learn_or_jax_and_trains():
    out = printed_json(TENSORFLOW_LOAD)
    assert out == {"left_out": [], "backend": "tensorflow", "predicts": True, "sklearn": True}
