"""Compare tracked runs side by side, and register the best one's model.

python -m mnist_exp.compare                        # the latest sweep (make compare)
python -m mnist_exp.compare --parent RUN_ID        # one sweep, by its parent run
python -m mnist_exp.compare --all                  # every run of the experiment
python -m mnist_exp.compare --register mnist-best  # ... and register the best run's model

Runs that differ only in their seed are one variant, compared as one: its mean best validation
accuracy with a 95 % interval, and whether it is tied with the best variant (sweeps.variants).
Prints the variants (or, with one seed each, the runs) best first, says in words what differs
for real, and writes runs.md/.csv and variants.md/.csv beside the figures: validation curves
(a mean and band per variant), each variant's interval with its seeds, and the misclassified test
images per digit per run. A sweep's comparison is also logged to its parent run, under
comparison/. --register registers the best variant's best seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from mnist_exp.cli import fail
from mnist_exp.composition import default_config
from mnist_exp.config import PROJECT_ROOT
from mnist_exp.names import IN_SWEEP_TAG, PARENT_TAG
from mnist_exp.run_table import (
    RESULT_COLUMNS,
    comparison_table,
    finished_seeds,
    fitted,
    for_reading,
    markdown,
    validation_history,
)
from mnist_exp.sweeps import variants
from mnist_exp.tracking import orphans, queries, store, tracked_model
from mnist_exp.tracking.health import TrackingUnavailable
from mnist_exp.training import plots

# The column search_runs gives MLflow's parent-run tag.
PARENT_COLUMN = f"tags.{PARENT_TAG}"
# Columns of the tags that link a finished run to each later sweep that skipped it.
IN_SWEEP_PREFIX = f"tags.{IN_SWEEP_TAG}"
FILES = (
    "runs.md",
    "runs.csv",
    "variants.md",
    "variants.csv",
    "val_accuracy.png",
    "variants.png",
    "misclassified_per_class.png",
)


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


def write_comparison(runs: pd.DataFrame, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-run table, the per-variant one and their figures, written into `out`; both
    tables. Runs of one variant (the same config but for the seed) are compared as one."""
    val_curves = validation_history(runs)
    table = comparison_table(runs, val_curves)
    labels = dict(zip(table.run_id, table.run, strict=True))
    confusions = {labels[r]: queries.load_confusion_matrix(r) for r in table.run_id}
    finished = finished_seeds(table, runs)
    by_variant = variants.summarise(finished)

    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.md").write_text(markdown(for_reading(table)))
    table.to_csv(out / "runs.csv", index=False)
    by_variant.drop(columns=["seeds", "label"]).assign(
        seeds=[" ".join(f"{s}:{v:.4f}" for s, v in d.items()) for d in by_variant.seeds]
    ).to_csv(out / "variants.csv", index=False)
    verdict = variants.verdict(by_variant)
    (out / "variants.md").write_text(
        f"{markdown(for_reading(variants_shown(by_variant)))}\n{verdict}\n"
    )
    if (by_variant.n > 1).any():
        grouped: dict[str, list[list[float]]] = {}
        for run_id, name in zip(finished.run_id, finished.variant_name, strict=True):
            grouped.setdefault(name, []).append(val_curves[run_id])
        ordered = {label: grouped[name] for name, label in
                   zip(by_variant.variant_name, by_variant.label, strict=True)}  # fmt: skip
        plots.variant_curves(variants.curve_bands(ordered)).savefig(out / "val_accuracy.png")
    else:
        curves = {labels[r]: val_curves[r] for r in table.run_id if val_curves[r]}
        plots.validation_curves(curves).savefig(out / "val_accuracy.png")
    rows = [(r.label, r.val_mean, r.val_ci_low, r.val_ci_high, list(r.seeds.values()),
             r.tied_with_best) for r in by_variant.itertuples()]  # fmt: skip
    plots.variant_intervals(rows).savefig(out / "variants.png")
    counted = {name: counts for name, counts in confusions.items() if counts is not None}
    plots.misclassified_per_class(counted).savefig(out / "misclassified_per_class.png")
    return table, by_variant


def variants_shown(by_variant: pd.DataFrame) -> pd.DataFrame:
    """The per-variant table as people read it: interval as one column, seeds as a list."""
    shown = by_variant[["label", "n", "val_mean", "val_sd", "test_mean"]].copy()
    shown.insert(4, "val 95% interval", [
        "-" if pd.isna(lo) else f"[{lo:.4f}, {hi:.4f}]"
        for lo, hi in zip(by_variant.val_ci_low, by_variant.val_ci_high, strict=True)
    ])  # fmt: skip
    shown["tied_with_best"] = by_variant.tied_with_best.map({True: "yes", False: "no"}).fillna("?")
    shown["seeds"] = [" ".join(f"{v:.4f}" for v in d.values()) for d in by_variant.seeds]
    return shown.rename(columns={"label": "variant"})


def mixed_settings(runs: pd.DataFrame) -> list[str]:
    """What differs among runs that are not comparable as equals: the data and epochs."""
    keys = ("data.limit_train", "data.limit_test", "train.epochs")
    return [
        f"{key} ({', '.join(sorted(map(str, runs[f'params.{key}'].fillna('all').unique())))})"
        for key in keys
        if f"params.{key}" in runs and runs[f"params.{key}"].nunique(dropna=False) > 1
    ]


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
    parser.add_argument("--register", metavar="NAME",
                        help="register the model of the best variant's best seed")  # fmt: skip
    parser.add_argument("--tracking-uri", default=defaults.uri, help="default: %(default)s")
    args = parser.parse_args(argv)

    try:
        store.use_store(args.tracking_uri)
    except TrackingUnavailable as err:
        fail(str(err))
    runs, parent = select_runs(args.experiment, args.parent, args.all)
    out = args.out or PROJECT_ROOT / "outputs" / "compare" / (parent or f"{args.experiment}-all")
    table, by_variant = write_comparison(runs, out)

    what = f"sweep {parent}" if parent else f"experiment '{args.experiment}'"
    if (by_variant.n > 1).any():
        print(f"{len(by_variant)} variants ({len(table)} runs) of {what}, best mean first:\n")
        keep = ["variant", "n", "val_mean", "val 95% interval", "tied_with_best"]
        print(fitted(for_reading(variants_shown(by_variant)), keep)[0])
    else:
        print(f"{len(table)} runs of {what}, best validation accuracy first:\n")
        text, left_out = fitted(for_reading(table), ["run", *RESULT_COLUMNS, "run_id"])
        print(text)
        if left_out:
            print(f"({len(left_out)} more columns in runs.csv: {', '.join(left_out)})")
    print(f"\n{variants.verdict(by_variant)}")
    if not parent and (mixed := mixed_settings(runs)):
        print(f"Note: these runs differ in {'; '.join(mixed)}: they are listed side by side, "
              "not comparable as equals.")  # fmt: skip
    print(f"\nWrote {', '.join(FILES)} to {out}")
    if parent:
        if queries.log_comparison(parent, out, FILES):
            print(f"Logged them to the parent run {parent}, under comparison/")
        else:
            print(f"Not logged to the parent run {parent}: this user may only read it (READ)")
    if args.register:
        register(args.register, by_variant, table, what)
        if parent and (better := better_elsewhere(args.experiment, table, by_variant)):
            print(better)
    return 0


def better_elsewhere(experiment: str, table: pd.DataFrame, by_variant: pd.DataFrame) -> str | None:
    """A note when the experiment holds a FINISHED run outside this sweep whose validation
    accuracy beats the one registered: it may have trained on other data or for longer."""
    import mlflow

    if by_variant.empty:
        return None
    chosen = table.set_index("run_id").loc[by_variant.best_run_id.iloc[0], "best_val_accuracy"]
    found = mlflow.search_runs(
        experiment_names=[experiment], filter_string="attributes.status = 'FINISHED'",
        order_by=["metrics.val_accuracy DESC"], max_results=100,
    )  # fmt: skip
    outside = found[~found.run_id.isin(set(table.run_id)) & found["metrics.val_accuracy"].notna()]
    if outside.empty or outside["metrics.val_accuracy"].iloc[0] <= chosen:
        return None
    best = outside.iloc[0]
    return (
        f"Note: run {best['tags.mlflow.runName']} ({best.run_id}) outside this sweep has a "
        f"higher validation accuracy ({best['metrics.val_accuracy']:.4f} against "
        f"{chosen:.4f}), perhaps on other data or epochs; --all chooses among every run."
    )


def register(name: str, by_variant: pd.DataFrame, table: pd.DataFrame, among: str) -> None:
    """The best variant's best seed: the variant with the best mean, then, within it, the run
    with the best validation accuracy; its model version says so."""
    if by_variant.empty:
        fail(f"no FINISHED run among the {len(table)} runs of {among} to register")
    best = by_variant.iloc[0]
    run = table.set_index("run_id").loc[best.best_run_id]
    interval = (f", 95 % interval [{best.val_ci_low:.4f}, {best.val_ci_high:.4f}]"
                if best.n > 1 else " (one seed: no interval)")  # fmt: skip
    description = (f"Variant {best.label} ({best.variant}): best of {len(by_variant)} "
                   f"variants of {among} by mean validation accuracy {best.val_mean:.4f} over "
                   f"n={best.n} seed(s){interval}; this is its best seed's run.")  # fmt: skip
    try:
        version = tracked_model.register_model(best.best_run_id, name, description)
    except LookupError as err:
        fail(str(err))
    others = "; --all chooses among every run of the experiment" if "sweep" in among else ""
    print(
        f"Chose among the {len(table)} runs ({len(by_variant)} variants) of {among}{others}: "
        f"{best.label}, mean {best.val_mean:.4f} over {best.n} seed(s){interval}.\n"
        f"Registered its best seed's model, {run.run} ({best.best_run_id}), as '{name}' version "
        f"{version}. Use it:\n  python -m mnist_exp.predict --model models:/{name}/{version} "
        "--test-index 0"
    )


if __name__ == "__main__":
    sys.exit(main())
