"""Compare tracked runs side by side, and register the best one's model.

python -m mnist_exp.compare                        # the latest sweep (make compare)
python -m mnist_exp.compare --parent RUN_ID        # one sweep, by its parent run
python -m mnist_exp.compare --all                  # every run of the experiment
python -m mnist_exp.compare --register mnist-best  # ... and register the best run's model

Prints a table (only the params that differ, best validation accuracy, test accuracy, epochs,
fit time, status; best first) and writes it as runs.md and runs.csv beside two figures: the
validation-accuracy curves overlaid, and the misclassified test images per digit per run. A sweep's
comparison is also logged to its parent run, under comparison/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mnist_exp.cli import fail
from mnist_exp.composition import default_config
from mnist_exp.config import PROJECT_ROOT
from mnist_exp.names import IN_SWEEP_TAG, PARENT_TAG, PRUNED_TAG
from mnist_exp.tracking import orphans, queries, store, tracked_model
from mnist_exp.tracking.health import TrackingUnavailable
from mnist_exp.training import plots

# The column search_runs gives MLflow's parent-run tag.
PARENT_COLUMN = f"tags.{PARENT_TAG}"
# Columns of the tags that link a finished run to each later sweep that skipped it.
IN_SWEEP_PREFIX = f"tags.{IN_SWEEP_TAG}"
# The columns after the differing params, in order; what the table is sorted by comes first.
RESULT_COLUMNS = ["best_val_accuracy", "test_accuracy", "epochs", "fit_seconds", "status"]
FILES = ("runs.md", "runs.csv", "val_accuracy.png", "misclassified_per_class.png")


def sweep_members(runs: pd.DataFrame) -> dict[str, pd.Series]:
    """Each sweep's runs, as a mask over `runs` by parent run id: its child runs, and the runs
    of earlier sweeps that it skipped as already finished."""
    parent_ids = runs[PARENT_COLUMN] if PARENT_COLUMN in runs else pd.Series(dtype=object)
    members = {parent: parent_ids == parent for parent in parent_ids.dropna().unique()}
    for column in runs.columns[runs.columns.str.startswith(IN_SWEEP_PREFIX)]:
        parent = column.removeprefix(IN_SWEEP_PREFIX)
        linked = runs[column].notna()
        members[parent] = members[parent] | linked if parent in members else linked
    return members


def select_runs(experiment: str, parent: str | None, every: bool):
    """The runs to compare (a DataFrame), and the sweep's parent run id (None with --all)."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        fail(f"no experiment '{experiment}' in {mlflow.get_tracking_uri()}; run one first")
    # A run whose process was killed is not left RUNNING in the table.
    orphans.end_orphans_in_experiment(found.experiment_id)
    runs = mlflow.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"])
    members = sweep_members(runs)
    if every:
        # A sweep's parent run holds no results of its own.
        results = runs[~runs.run_id.isin(set(members))]
        if results.empty:
            fail(f"experiment '{experiment}' has no runs yet")
        return results, None
    if parent is None:
        sweeps = runs.run_id[runs.run_id.isin(set(members))]
        if sweeps.empty:
            fail(f"experiment '{experiment}' has no sweep; run one (make sweep) or pass --all")
        parent = sweeps.iloc[0]
    elif parent not in set(runs.run_id):
        fail(f"--parent {parent}: no such run in experiment '{experiment}'")
    if parent not in members:
        fail(f"--parent {parent}: run has no child runs, so it is not a sweep; try --all")
    return runs[members[parent]], parent


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """Run names, made unique with an id prefix where two runs share a name."""
    names = runs["tags.mlflow.runName"].fillna("")
    repeated = names.duplicated(keep=False)
    return names.where(~repeated, names + " [" + runs.run_id.str[:8] + "]")


def comparison_table(runs: pd.DataFrame, val_curves: dict[str, list[float]]) -> pd.DataFrame:
    """One row per run, best first. val_curves maps each run id to its val_accuracy per epoch."""
    # MLflow's Keras callback also logs the optimizer's own config (optimizer_*), restating train.*
    params = runs.filter(like="params.").drop(columns=runs.filter(like="params.optimizer_"))
    differing = [c for c in params if params[c].nunique(dropna=False) > 1]
    table = pd.DataFrame({"run": run_labels(runs)})
    for column in differing:
        table[column.removeprefix("params.")] = runs[column]
    table["best_val_accuracy"] = [max(val_curves[r], default=np.nan) for r in runs.run_id]
    table["test_accuracy"] = runs.get("metrics.test_accuracy", np.nan)
    table["epochs"] = [len(val_curves[r]) for r in runs.run_id]
    table["fit_seconds"] = runs.get("metrics.fit_seconds", np.nan)
    table["status"] = statuses(runs)
    table["run_id"] = runs.run_id
    # Validation accuracy picks the winner, so the test set stays a fair final check.
    ranked = table.sort_values(["best_val_accuracy", "test_accuracy"], ascending=False)
    return ranked.reset_index(drop=True)


def statuses(runs: pd.DataFrame) -> pd.Series:
    """MLflow's status, or `PRUNED (epoch N)` for a search trial its pruner stopped after N."""
    pruned = runs.get(f"tags.{PRUNED_TAG}", pd.Series(None, index=runs.index, dtype=object))
    return runs.status.where(pruned.isna(), "PRUNED (epoch " + pruned.astype(str) + ")")


def for_reading(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for column, digits in (("best_val_accuracy", 4), ("test_accuracy", 4), ("fit_seconds", 1)):
        shown[column] = shown[column].map(lambda v, d=digits: "-" if pd.isna(v) else f"{v:.{d}f}")
    return shown.fillna("-").astype(str)


def markdown(table: pd.DataFrame) -> str:
    # pandas' to_markdown needs the tabulate package; a pipe table is four lines.
    lines = [table.columns.tolist(), ["---"] * len(table.columns), *table.values.tolist()]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines) + "\n"


def validation_history(runs: pd.DataFrame) -> dict[str, list[float]]:
    """Each run's val_accuracy per epoch, by run id."""
    from mlflow import MlflowClient

    client = MlflowClient()
    val_curves = {}
    for run_id in runs.run_id:
        history = sorted(client.get_metric_history(run_id, "val_accuracy"), key=lambda m: m.step)
        val_curves[run_id] = [m.value for m in history]
    return val_curves


def write_comparison(runs: pd.DataFrame, out: Path) -> pd.DataFrame:
    """The table and both figures, written into `out`; returns the table."""
    val_curves = validation_history(runs)
    table = comparison_table(runs, val_curves)
    labels = dict(zip(table.run_id, table.run, strict=True))
    confusions = {labels[r]: queries.load_confusion_matrix(r) for r in table.run_id}

    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.md").write_text(markdown(for_reading(table)))
    table.to_csv(out / "runs.csv", index=False)
    curves = {labels[r]: val_curves[r] for r in table.run_id if val_curves[r]}
    plots.validation_curves(curves).savefig(out / "val_accuracy.png")
    counted = {name: counts for name, counts in confusions.items() if counts is not None}
    plots.misclassified_per_class(counted).savefig(out / "misclassified_per_class.png")
    return table


def main(argv: list[str] | None = None) -> int:
    defaults = default_config().tracking
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default=defaults.experiment)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--parent", metavar="RUN_ID", help="a sweep's parent run (default: latest)")
    which.add_argument("--all", action="store_true", help="every run of the experiment")
    parser.add_argument("--out", type=Path, help="default: outputs/compare/<parent run | name>")
    parser.add_argument("--register", metavar="NAME", help="register the best run's model")
    parser.add_argument("--tracking-uri", default=defaults.uri, help="default: %(default)s")
    args = parser.parse_args(argv)

    try:
        store.use_store(args.tracking_uri)
    except TrackingUnavailable as err:
        fail(str(err))
    runs, parent = select_runs(args.experiment, args.parent, args.all)
    out = args.out or PROJECT_ROOT / "outputs" / "compare" / (parent or f"{args.experiment}-all")
    table = write_comparison(runs, out)

    what = f"sweep {parent}" if parent else f"experiment '{args.experiment}'"
    print(f"{len(table)} runs of {what}, best validation accuracy first:\n")
    shown = for_reading(table)
    shown["run"] = shown["run"].str.ljust(shown["run"].str.len().max())  # names read left-aligned
    print(shown.to_string(index=False, justify="left"))
    print(f"\nWrote {', '.join(FILES)} to {out}")
    if parent:
        queries.log_comparison(parent, out, FILES)
        print(f"Logged them to the parent run {parent}, under comparison/")
    if args.register:
        best = table.iloc[0]
        try:
            version = tracked_model.register_model(best.run_id, args.register)
        except LookupError as err:
            fail(str(err))
        print(
            f"Registered the model of {best.run} ({best.run_id}) as '{args.register}' version "
            f"{version}. Use it:\n  python -m mnist_exp.predict --model "
            f"models:/{args.register}/{version} --test-index 0"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
