"""The Python API (mnist_exp.run_experiment, run_sweep): the CLI's validation, tracking and resume,
and what every run logs besides its results: the data sets it used and system metrics."""

from __future__ import annotations

import platform
import subprocess
import sys

import numpy as np
import pytest
from hydra.errors import MissingConfigException

import mnist_exp
from mnist_exp.config import ConfigError
from mnist_exp.experiment import SweepError
from mnist_exp.training.mnist import DataError, subset_digest
from tests.helpers import LEAKY_ENV, TINY, Store, artifact_text, cli_env, parent_and_children

# Sampled often enough that even a tiny run of a few seconds has several samples.
FAST_SAMPLING = "tracking.system_metrics_seconds=0.5"


@pytest.fixture
def api_env(monkeypatch, mnist_dir):
    """This process as a notebook's kernel would be: the shared MNIST cache, no stray store."""
    for name in LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MNIST_EXP_DATA_DIR", str(mnist_dir))


def test_import_is_cheap_and_the_api_needs_no_tensorflow_until_it_trains():
    code = (
        "import sys, mnist_exp; mnist_exp.run_experiment, mnist_exp.run_sweep; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_compose_config_validates_as_the_cli_does():
    cfg = mnist_exp.compose_config(["model.hidden=64", "train.epochs=3"])
    assert (cfg.model.hidden, cfg.train.epochs, cfg.train.batch_size) == (64, 3, 32)
    with pytest.raises(ConfigError, match=r"model\.dropout=1\.5: must be >= 0\.0 and < 1\.0"):
        mnist_exp.compose_config(["model.dropout=1.5"])
    with pytest.raises(MissingConfigException, match="model/rnn"):
        mnist_exp.compose_config(["model=rnn"])


def test_a_bad_override_records_nothing(store: Store, api_env):
    with pytest.raises(ConfigError, match=r"model\.dropout=1\.5"):
        mnist_exp.run_experiment(["model.dropout=1.5", *store.overrides])
    with pytest.raises(ConfigError, match=r"model\.hidden=8,16: a sweep .* is for run_sweep"):
        mnist_exp.run_experiment(["model.hidden=8,16", *store.overrides])
    assert not store.root.exists()


@pytest.mark.slow
def test_run_experiment_records_what_the_cli_records_with_datasets_and_system_metrics(
    store: Store, api_env, recwarn
):
    run = mnist_exp.run_experiment(["model.hidden=32", *TINY, FAST_SAMPLING, *store.overrides])

    client = store.client()
    (tracked,) = store.runs()
    assert tracked.info.run_id == run.run_id and tracked.info.status == "FINISHED"
    assert tracked.info.run_name == run.name == "dense-h32 limit_train=1000 limit_test=200 epochs=1"
    assert tracked.data.params["model.hidden"] == "32"
    assert tracked.data.metrics["test_accuracy"] == pytest.approx(run.metrics["test_accuracy"])
    assert tracked.data.tags["config_hash"]
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"config.yaml", "misclassified.png", "samples.png", "run.log"} <= artifacts
    log_text = artifact_text(client, tracked, "run.log")
    assert "MNIST loaded from cache" in log_text and "Done: test_accuracy=" in log_text
    assert run.history["val_accuracy"] and f"/runs/{run.run_id}?" in run.link
    assert run.link.startswith("http://127.0.0.1:5000/#/experiments/") and " " not in run.link

    # The model it hands back is the one it logged.
    import mlflow

    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    logged = mlflow.pyfunc.load_model(run.model_uri).predict(images)
    np.testing.assert_allclose(logged, run.model.predict(images, verbose=0), atol=1e-5)

    # The runs table's Dataset column: training and test data, named, with the subset's digest.
    inputs = {
        {t.key: t.value for t in i.tags}["mlflow.data.context"]: i.dataset
        for i in tracked.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "test"}
    assert inputs["training"].name == inputs["test"].name == "mnist"
    assert inputs["training"].digest == subset_digest("train", 1000)
    assert inputs["test"].digest == subset_digest("test", 200)
    assert '"features_shape": [1000, 28, 28, 1]' in inputs["training"].profile
    assert '"features_shape": [200, 28, 28, 1]' in inputs["test"].profile
    assert inputs["training"].source.endswith('mnist.npz"}')
    assert not [w for w in recwarn if "dataset source" in str(w.message)]

    # System metrics, sampled while it ran.
    system = {k: v for k, v in tracked.data.metrics.items() if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        system
    )
    assert system["system/system_memory_usage_megabytes"] > 0
    samples = client.get_metric_history(run.run_id, "system/cpu_utilization_percentage")
    assert len(samples) >= 2


def test_digests_differ_by_split_and_subset_and_full_means_all_rows():
    digests = {subset_digest(split, rows) for split in ("train", "test") for rows in (200, 1000)}
    assert len(digests) == 4
    assert subset_digest("train", 60_000) != subset_digest("train", 59_999)


@pytest.mark.slow
def test_run_sweep_compares_its_runs_and_a_second_call_trains_nothing(store, api_env, tmp_path):
    overrides = ["model.hidden=8,16", *TINY, *store.overrides, f"hydra.sweep.dir={tmp_path}/multi"]
    sweep = mnist_exp.run_sweep(overrides, echo=False)
    assert sweep.status == "FINISHED"
    parent, children = parent_and_children(store.runs())
    assert sweep.parent_run_id == parent.info.run_id and len(children) == 2
    assert set(sweep.table.run_id) == {c.info.run_id for c in children}
    assert sweep.table.best_val_accuracy.is_monotonic_decreasing
    assert set(sweep.curves) == {c.info.run_name for c in children}
    assert all(len(curve) == 1 for curve in sweep.curves.values())
    # One seed each: two variants of one run, and what a lead among single draws is worth.
    assert sweep.variants.n.tolist() == [1, 1] and "ran one seed" in sweep.verdict

    again = mnist_exp.run_sweep(overrides, echo=False)
    # The same sweep again: the same parent run, continued, and nothing retrained.
    assert again.parent_run_id == sweep.parent_run_id and again.status == "FINISHED"
    assert set(again.table.run_id) == set(sweep.table.run_id)
    assert len(store.runs()) == 3  # one parent, two trained runs


@pytest.mark.slow
def test_run_sweep_with_a_bad_value_raises_with_the_clis_message(store, api_env, tmp_path):
    overrides = ["model.hidden=8,0", *TINY, *store.overrides, f"hydra.sweep.dir={tmp_path}/m"]
    with pytest.raises(SweepError, match=r"model\.hidden=0: must be >= 1"):
        mnist_exp.run_sweep(overrides, echo=False)
    assert store.runs() == []  # a parent run opened for it is deleted again


@pytest.mark.slow
def test_the_cli_and_the_api_give_one_config_one_name(store: Store, api_env, run_cli):
    done = run_cli(*TINY[::-1], *store.overrides)  # the same overrides, the other way round
    assert done.returncode == 0, done.stdout[-2000:]
    run = mnist_exp.run_experiment([*TINY, *store.overrides])
    assert {r.info.run_name for r in store.runs()} == {run.name}


def test_a_cache_that_cannot_be_filled_is_refused_before_anything_is_recorded(
    store: Store, api_env, tmp_path
):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    with pytest.raises(DataError, match=r"data\.cache_dir=.*a-file/cache: MNIST is not cached"):
        mnist_exp.run_experiment([f"data.cache_dir={blocked}/cache", *TINY, *store.overrides])
    assert not store.root.exists()  # as the CLI: found before the store is even opened


@pytest.mark.slow
def test_a_cnn_through_the_api_is_prepared_as_the_cli_prepares_it(store: Store, run_cli, mnist_dir):
    """Both ways in call tracked_run.prepare: oneDNN where it pays (the CNN, on x86), Keras's
    backend, the cache check, the store. A fresh process, as a notebook kernel starts."""
    overrides = ["model=cnn", "model.filters=[4]", "model.dense=8", *TINY, *store.overrides]
    code = (
        "import os, mnist_exp\n"
        f"run = mnist_exp.run_experiment({overrides!r})\n"
        "print('PREPARED', os.environ.get('TF_ENABLE_ONEDNN_OPTS'), os.environ['KERAS_BACKEND'])\n"
    )
    env = {k: v for k, v in cli_env(mnist_dir).items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    api = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert api.returncode == 0, api.stderr
    prepared = next(line for line in api.stdout.splitlines() if line.startswith("PREPARED"))
    onednn = "1" if platform.machine().lower() in ("x86_64", "amd64") else "None"
    assert prepared == f"PREPARED {onednn} tensorflow"
    done = run_cli(*overrides)
    assert done.returncode == 0, done.stdout[-2000:]
    by_way = {run.info.run_id: run for run in store.runs()}
    assert len(by_way) == 2
    set_here = ("onednn", "keras_backend", "precision", "config_hash")
    api_run, cli_run = ({k: run.data.tags.get(k) for k in set_here} for run in by_way.values())
    assert api_run == cli_run and api_run["onednn"] == ("on" if onednn == "1" else "off")
