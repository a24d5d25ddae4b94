"""The compare CLI over a real tiny sweep: table, files, the parent's artifacts, the registry.

One sweep (hidden 8, 16, 32) and one `compare --register` serve every test here.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mnist_exp.compare import FILES
from mnist_exp.names import PARENT_TAG
from mnist_exp.run_table import RESULT_COLUMNS, comparison_table
from mnist_exp.training.train import confusion_matrix
from tests.helpers import TINY, Store, cli_env, parent_and_children, run_module

REGISTERED = "tiny-best"


@pytest.fixture(scope="module")
def compared(tiny_sweep: Store, tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("compare")
    done = run_module("mnist_exp.compare", "--out", str(out), "--register", REGISTERED,
                      "--tracking-uri", tiny_sweep.uri, cwd=out, env=cli_env(mnist_dir),
                      merge=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done, out


def children(store: Store):
    return parent_and_children(store.runs())[1]


@pytest.mark.slow
def test_table_has_a_row_per_run_best_first_and_only_the_params_that_differ(compared, tiny_sweep):
    done, out = compared
    table = pd.read_csv(out / "runs.csv")
    assert list(table.columns) == ["run", "model.hidden", "best_val_accuracy", "best_epoch",
                                   "test_accuracy", "epochs", "fit_seconds", "status",
                                   "run_id"]  # fmt: skip
    runs = {r.info.run_id: r for r in children(tiny_sweep)}
    assert set(table.run_id) == set(runs)
    assert table.best_val_accuracy.is_monotonic_decreasing
    for row in table.to_dict("records"):
        run = runs[row["run_id"]]
        assert row["run"] == run.info.run_name
        assert str(row["model.hidden"]) == run.data.params["model.hidden"]
        # One epoch, so its last val_accuracy is its best.
        assert row["best_val_accuracy"] == run.data.metrics["val_accuracy"]
        assert row["test_accuracy"] == run.data.metrics["test_accuracy"]
        assert (row["epochs"], row["best_epoch"], row["status"]) == (1, 1, "FINISHED")
        assert run.data.metrics["best_epoch"] == 1  # logged with the run, too

    printed = done.stdout.splitlines()
    header = next(line for line in printed if line.strip().startswith("run"))
    assert "model.hidden" in header and "model.layers" not in header
    assert "optimizer" not in header and "train.epochs" not in header
    rows = printed[printed.index(header) + 1 :][:3]
    assert [line.split()[-1] for line in rows] == list(table.run_id)  # same order as the CSV
    markdown = (out / "runs.md").read_text().splitlines()
    assert len(markdown) == 5 and markdown[0].startswith("| run | model.hidden |")


@pytest.mark.slow
def test_comparison_files_are_written_and_logged_to_the_parent_run(compared, tiny_sweep):
    _, out = compared
    parent, _ = parent_and_children(tiny_sweep.runs())
    logged = tiny_sweep.client().list_artifacts(parent.info.run_id, "comparison")
    assert {a.path for a in logged} == {f"comparison/{name}" for name in FILES}
    assert all(a.file_size > (10_000 if a.path.endswith(".png") else 100) for a in logged)
    assert all((out / name).stat().st_size > 0 for name in FILES)


@pytest.mark.slow
def test_registered_best_model_loads_back_and_predicts_as_the_trained_model(
    compared, tiny_sweep, mnist
):
    import mlflow

    done, out = compared
    best = pd.read_csv(out / "runs.csv").iloc[0]
    assert f"as '{REGISTERED}' version 1" in done.stdout
    (version,) = tiny_sweep.client().search_model_versions(f"name = '{REGISTERED}'")
    assert version.run_id == best.run_id

    mlflow.set_tracking_uri(tiny_sweep.uri)
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED}/latest")
    x_test = (mnist.x_test[:200].astype(np.float32) / 255)[..., np.newaxis]
    probabilities = np.asarray(model.predict(x_test))
    # The run logged its confusion matrix from the trained Keras model's own predictions.
    logged = tiny_sweep.client().download_artifacts(best.run_id, "confusion_matrix.json")
    with open(logged) as f:
        expected = np.array(json.load(f)["counts"])
    np.testing.assert_array_equal(confusion_matrix(mnist.y_test[:200], probabilities), expected)
    assert np.trace(expected) / 200 == pytest.approx(best.test_accuracy)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [(["--parent", "0123abc"], "error: --parent 0123abc: no such run in experiment 'mnist'"),
     (["--experiment", "nope"], "error: no experiment 'nope' in sqlite:///")],
)  # fmt: skip
def test_bad_choice_of_runs_is_one_clear_line(run_tool, tiny_sweep, args, message):
    done = run_tool("compare", *args, store=tiny_sweep)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_run_that_is_not_a_sweep_is_refused(run_tool, tiny_sweep):
    child = children(tiny_sweep)[0].info.run_id
    done = run_tool("compare", "--parent", child, store=tiny_sweep)
    assert done.returncode == 1
    assert f"--parent {child}: run has no child runs, so it is not a sweep" in done.stderr


def test_an_empty_store_says_so(run_tool, store):
    done = run_tool("compare", store=store)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: no MLflow store at {store.root}/mlflow.db" in done.stderr


def test_comparison_table_ranks_on_validation_and_shows_only_differing_params():
    runs = pd.DataFrame(
        {
            "run_id": ["r1", "r2", "r3"],
            "tags.mlflow.runName": ["dense-h8", "dense-h16", "dense-h16"],
            "params.model.hidden": ["8", "16", "16"],
            "params.train.epochs": ["2", "2", "2"],
            "params.optimizer_name": ["adam", "adam", "adam"],
            "metrics.test_accuracy": [0.95, 0.90, 0.99],
            "metrics.fit_seconds": [1.0, 2.0, 3.0],
            "status": ["FINISHED", "FINISHED", "FAILED"],
        }
    )
    curves = {"r1": [0.5, 0.8], "r2": [0.9, 0.7], "r3": []}
    table = comparison_table(runs, curves)
    assert list(table.columns) == ["run", "model.hidden", *RESULT_COLUMNS, "run_id"]
    # The best epoch's val_accuracy ranks (not the test accuracy); a run without one comes last.
    assert list(table.run_id) == ["r2", "r1", "r3"]
    assert list(table.best_val_accuracy[:2]) == [0.9, 0.8] and np.isnan(table.best_val_accuracy[2])
    assert list(table.epochs) == [2, 2, 0]
    # Two runs share a name: an id prefix tells them apart.
    assert list(table.run) == ["dense-h16 [r2]", "dense-h8", "dense-h16 [r3]"]


@pytest.mark.slow
def test_no_artifact_download_bars_above_the_table(compared):
    # MLflow draws one per confusion matrix it fetches unless told not to (compare.main does).
    done, _ = compared
    assert "Downloading artifacts" not in done.stderr + done.stdout
    assert done.stdout.splitlines()[0].startswith("3 runs of sweep ")


def test_a_pruned_trial_shows_the_epoch_it_was_stopped_after():
    runs = pd.DataFrame(
        {
            "run_id": ["r1", "r2"],
            "tags.mlflow.runName": ["dense-h8", "dense-h16"],
            "tags.pruned_at_epoch": [None, "1"],
            "params.model.hidden": ["8", "16"],
            "status": ["FINISHED", "KILLED"],
        }
    )
    table = comparison_table(runs, {"r1": [0.5, 0.8, 0.9], "r2": [0.3]})
    assert list(table.status) == ["FINISHED", "PRUNED (epoch 1)"]
    assert list(table.epochs) == [3, 1]


@pytest.mark.slow
def test_seeds_are_compared_per_variant_ties_said_and_the_best_variant_registered(
    run_cli, run_tool, store: Store
):
    # Two widths, each under a change that does nothing to training (the validation batch
    # size), on three seeds each: 12 runs, 4 variants. On JAX, where such tiny jobs are quickest.
    sweep = ["-m", "model.hidden=4,64", "train.validation_batch_size=256,1024",
             "hydra.sweeper.seeds=3", "train.backend=jax", *TINY, *store.overrides]  # fmt: skip
    done = run_cli(*sweep)
    assert done.returncode == 0, done.stdout[-3000:]
    runs = store.runs()
    children = [r for r in runs if r.data.tags.get(PARENT_TAG)]
    assert len(children) == 12
    assert {r.data.params["seed"] for r in children} == {"1", "2", "3"}
    tags = {(r.data.tags["variant"], r.data.tags["variant_name"]) for r in children}
    assert len(tags) == 4 and all("seed=" not in name for _, name in tags)

    out = store.root / "compare"
    compared = run_tool("compare", "--out", str(out), "--register", "tiny-variant", store=store)
    assert compared.returncode == 0, compared.stderr
    table = pd.read_csv(out / "variants.csv")
    assert {"variant", "n", "val_mean", "val_ci_low", "val_ci_high", "test_mean",
            "tied_with_best"} <= set(table.columns)  # fmt: skip
    assert table.n.tolist() == [3, 3, 3, 3]
    assert table.val_mean.is_monotonic_decreasing
    wide = table.variant_name.str.startswith("dense-h64")
    assert table.tied_with_best[wide].all() and not table.tied_with_best[~wide].any()
    assert (table.val_ci_low <= table.val_mean).all() and (
        table.val_mean <= table.val_ci_high
    ).all()
    said = compared.stdout
    assert "4 variants (12 runs)" in said
    assert (
        "validation_batch_size=1024 and dense-h64 validation_batch_size=256 are tied" in said
        or ("validation_batch_size=256 and dense-h64 validation_batch_size=1024 are tied" in said)
    )
    assert "are worse" in said
    assert "Chose among the 12 runs (4 variants) of sweep" in said
    parent = next(r for r in runs if not r.data.tags.get(PARENT_TAG))
    logged = {a.path for a in store.client().list_artifacts(parent.info.run_id, "comparison")}
    assert {
        "comparison/variants.csv",
        "comparison/variants.md",
        "comparison/variants.png",
    } <= logged

    best = table.iloc[0]
    (version,) = store.client().search_model_versions("name = 'tiny-variant'")
    chosen = store.client().get_run(version.run_id)
    assert chosen.data.tags["variant"] == best.variant
    seeds_of_best = [r for r in children if r.data.tags["variant"] == best.variant]
    assert chosen.data.metrics["val_accuracy"] == max(r.data.metrics["val_accuracy"]
                                                     for r in seeds_of_best)  # fmt: skip
    assert "n=3" in version.description and "95 % interval" in version.description
