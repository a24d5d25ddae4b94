"""The per-run table compare prints and writes: one row per run, best validation accuracy first,
only the params that differ (in the config's own order), and what each run is a seed of."""

from __future__ import annotations

import hashlib
import shutil
import sys

import numpy as np
import pandas as pd

from mnist_exp.identity import SEED, config_keys, variant_name
from mnist_exp.names import PRUNED_TAG, VARIANT_NAME_TAG, VARIANT_TAG
from mnist_exp.training.history import best_epoch

# The columns after the differing params, in order; what the table is sorted by comes first.
RESULT_COLUMNS = ["best_val_accuracy", "best_epoch", "test_accuracy", "epochs", "fit_seconds",
                  "status"]  # fmt: skip


def in_config_order(columns: list[str]) -> list[str]:
    """`params.*` columns in the config's order; keys it does not know last, alphabetically."""
    order = {f"params.{key}": i for i, key in enumerate(config_keys())}
    return sorted(columns, key=lambda c: (order.get(c, len(order)), c))


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """Run names, made unique with an id prefix where two runs share a name."""
    names = runs["tags.mlflow.runName"].fillna("")
    repeated = names.duplicated(keep=False)
    return names.where(~repeated, names + " [" + runs.run_id.str[:8] + "]")


def comparison_table(runs: pd.DataFrame, val_curves: dict[str, list[float]]) -> pd.DataFrame:
    """One row per run, best first. val_curves maps each run id to its val_accuracy per epoch."""
    # MLflow's Keras callback also logs the optimizer's own config (optimizer_*), restating train.*
    params = runs.filter(like="params.").drop(columns=runs.filter(like="params.optimizer_"))
    differing = in_config_order([c for c in params if params[c].nunique(dropna=False) > 1])
    table = pd.DataFrame({"run": run_labels(runs)})
    for column in differing:
        table[column.removeprefix("params.")] = runs[column]
    table["best_val_accuracy"] = [max(val_curves[r], default=np.nan) for r in runs.run_id]
    table["best_epoch"] = [best_epoch(val_curves[r]) for r in runs.run_id]
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


def validation_history(runs: pd.DataFrame) -> dict[str, list[float]]:
    """Each run's val_accuracy per epoch, by run id."""
    from mlflow import MlflowClient

    client = MlflowClient()
    val_curves = {}
    for run_id in runs.run_id:
        history = sorted(client.get_metric_history(run_id, "val_accuracy"), key=lambda m: m.step)
        val_curves[run_id] = [m.value for m in history]
    return val_curves


def variant_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: its variant (the tag; for runs logged before it, a digest of its params without
    the seed), the variant's name, and its seed."""
    params = runs.filter(like="params.").drop(columns=[f"params.{SEED}"], errors="ignore")
    # A param a run does not have (the other model family's) is NaN: "-" in the digest.
    digest = (
        params.fillna("-")
        .astype(str)
        .agg("|".join, axis=1)
        .map(lambda s: "p" + hashlib.sha256(s.encode()).hexdigest()[:9])
    )
    tagged = runs.get(f"tags.{VARIANT_TAG}", pd.Series(None, index=runs.index, dtype=object))
    named = runs.get(f"tags.{VARIANT_NAME_TAG}", pd.Series(None, index=runs.index, dtype=object))
    names = runs["tags.mlflow.runName"].fillna("").map(variant_name)
    return pd.DataFrame({
        "run_id": runs.run_id,
        "variant": tagged.where(tagged.notna(), digest),
        "variant_name": named.where(named.notna(), names),
        "seed": runs.get(f"params.{SEED}", pd.Series("", index=runs.index)).fillna(""),
    })  # fmt: skip


def finished_seeds(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED rows of the per-run table, each with its variant, variant name and seed:
    what sweeps.variants.summarise compares."""
    finished = table[table.status == "FINISHED"].drop(columns=SEED, errors="ignore")
    return finished.merge(variant_columns(runs), on="run_id")


def for_reading(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for column in shown.columns:
        digits = 1 if column == "fit_seconds" else 4
        if shown[column].dtype.kind == "f" and column not in ("seed", "n"):
            shown[column] = shown[column].map(
                lambda v, d=digits: "-" if pd.isna(v) else f"{v:.{d}f}"
            )
    return shown.fillna("-").astype(str)


def markdown(table: pd.DataFrame) -> str:
    # pandas' to_markdown needs the tabulate package; a pipe table is four lines.
    lines = [table.columns.tolist(), ["---"] * len(table.columns), *table.values.tolist()]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines) + "\n"


def fitted(shown: pd.DataFrame, keep: list[str], width: int | None = None) -> tuple[str, list[str]]:
    """`shown` as text no wider than the terminal: the columns in `keep` always, the others
    (the differing params) from the left while they fit; the text and the columns left out.
    Into a pipe or a file, nothing is left out."""
    if width is None and sys.stdout.isatty():
        width = shutil.get_terminal_size().columns
    width = width or sys.maxsize
    shown = shown.copy()
    first = shown.columns[0]  # the names: read left-aligned
    shown[first] = shown[first].str.ljust(shown[first].str.len().max())
    optional = [c for c in shown.columns if c not in keep]
    dropped: list[str] = []
    while True:
        text = shown.drop(columns=dropped).to_string(index=False, justify="left")
        if max(map(len, text.splitlines())) <= width or len(dropped) == len(optional):
            return text, dropped
        dropped.append(optional[len(optional) - 1 - len(dropped)])
