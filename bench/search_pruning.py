"""What pruning saves: the same Optuna search with and without a pruner, side by side.

    .venv/bin/python bench/search_pruning.py                     # 20 trials, 3 epochs, full MNIST
    .venv/bin/python bench/search_pruning.py --trials 6 --epochs 2 --pruners hyperband

Every search is `+experiment=optuna_search` with the same sampler seed, one trial at a time, into a
fresh local store each; the only difference is `hydra/sweeper/pruner` (none, then each of
--pruners: median and successive_halving by default). Reports the total epochs trained (from each
trial's val_accuracy curve in MLflow), the wall time of the whole command and the study's best
validation accuracy. Appends to bench/RESULTS.md. Takes 30-60 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from cpu import cpu_line  # noqa: E402  (bench/ is on sys.path as the script's directory)


def search(pruner: str, trials: int, epochs: int, store: Path, extra: list[str]) -> dict:
    from mlflow import MlflowClient

    store.mkdir(parents=True)
    uri = f"sqlite:///{store}/mlflow.db"
    cmd = [sys.executable, "-m", "mnist_exp.run", "-m", "+experiment=optuna_search",
           f"hydra/sweeper/pruner={pruner}", f"hydra.sweeper.n_trials={trials}",
           f"train.epochs={epochs}", f"tracking.uri={uri}",
           f"tracking.artifact_location={store}/artifacts",
           f"hydra.sweep.dir={store}/multirun", *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=store)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"search failed: {' '.join(cmd)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mnist").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials_run = [r for r in runs if "optuna_trial" in r.data.tags]
    curves = [client.get_metric_history(r.info.run_id, "val_accuracy") for r in trials_run]
    return {
        "trials": len(trials_run),
        "pruned": sum("pruned_at_epoch" in r.data.tags for r in trials_run),
        "epochs": sum(len(curve) for curve in curves),
        "wall": wall,
        "best": parent.data.metrics["best_val_accuracy"],
        "best_params": {k: v for k, v in parent.data.params.items() if k.startswith("best.")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--pruners",
        nargs="+",
        default=["median", "successive_halving"],
        help="hydra/sweeper/pruner choices to compare with none",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("overrides", nargs="*", help="more overrides for both searches, for a "
                        "check (data.limit_train=1000): then nothing is appended")  # fmt: skip
    args = parser.parse_args()

    print(cpu_line(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pruner in ("none", *args.pruners):
            print(f"pruner={pruner}: {args.trials} trials, {args.epochs} epochs ...", flush=True)
            result = search(pruner, args.trials, args.epochs, Path(tmp) / pruner, args.overrides)
            print(f"  {result}", flush=True)
            rows.append((pruner, result))
    base = rows[0][1]
    table = [
        f"\n## Search with and without pruning\n\n`bench/search_pruning.py --trials {args.trials} "
        f"--epochs {args.epochs} --pruners {' '.join(args.pruners)}` on "
        f"{datetime.now():%Y-%m-%d %H:%M}, "
        f"{cpu_line()} `+experiment=optuna_search` (TPE seed 42, full MNIST, one trial at a time, "
        "local store), once with `hydra/sweeper/pruner=none` and once with each pruner.\n",
        "| pruner | trials | pruned | epochs trained | wall s | wall ÷ no pruning | "
        "best val acc | Δ best (pp) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pruner, r in rows:
        table.append(
            f"| {pruner} | {r['trials']} | {r['pruned']} | {r['epochs']} | {r['wall']:.0f} | "
            f"{r['wall'] / base['wall']:.2f} | {r['best']:.4f} | "
            f"{(r['best'] - base['best']) * 100:+.2f} |"
        )
    for pruner, r in rows:
        table.append(f"\nBest trial with `{pruner}`: {r['best_params']}")
    text = "\n".join(table) + "\n"
    print(text)
    if not args.overrides:
        with open(args.results, "a") as out:
            out.write(text)


if __name__ == "__main__":
    main()
