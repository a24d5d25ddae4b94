"""Seeds at the price of one run: the baseline once, against five seeds of it, side by side.

    make bench-seeds                              # full MNIST, 10 epochs, 2 rounds
    .venv/bin/python bench/seeds_together.py --rounds 1 --seeds 3

Alternating within one invocation, each command whole and in a fresh store:
  (1) python -m mnist_exp.run +experiment=baseline seed=1           one run
  (2) ... -m hydra/launcher=together seed=1,...,N                    N seeds together
  (3) ... -m seed=1,...,N                                            N seeds one after another
Wall time is the whole command's; fit seconds, test accuracy and each run's time beyond its fit
(data, evaluation, figures, model, MLflow) come from the runs MLflow recorded. Ratios are
against (1) of the same round, so a busy machine slows both sides alike. Appends to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cpu import cpu_line, publish  # noqa: E402


def command(store: Path, seeds: int, launcher: str | None) -> list[str]:
    multirun = ["-m"] if seeds > 1 else []
    return [sys.executable, "-m", "mnist_exp.run", *multirun, "+experiment=baseline",
            f"seed={','.join(map(str, range(1, seeds + 1)))}",
            *([f"hydra/launcher={launcher}"] if launcher else []),
            f"tracking.uri=sqlite:///{store}/mlflow.db", f"tracking.artifact_location={store}/a",
            f"hydra.run.dir={store}/outputs", f"hydra.sweep.dir={store}/multirun"]  # fmt: skip


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"benchmark step failed: {' '.join(cmd)}\n{(done.stdout + done.stderr)[-3000:]}")
    return time.perf_counter() - start


def recorded(store: Path) -> list[dict]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.get_experiment_by_name("mnist")
    runs = [r for r in client.search_runs([exp.experiment_id]) if "seed" in r.data.params]
    # A run's logging starts with its test metrics (tracking.outcome) and ends with the run.
    logged = {r.info.run_id: client.get_metric_history(r.info.run_id, "test_accuracy")[-1].timestamp
              for r in runs}  # fmt: skip
    return [{"seed": int(r.data.params["seed"]), "fit": r.data.metrics["fit_seconds"],
             "acc": r.data.metrics["test_accuracy"],
             "beyond_fit": (r.info.end_time - r.info.start_time) / 1000
             - r.data.metrics["fit_seconds"],
             "logging": (r.info.end_time - logged[r.info.run_id]) / 1000}
            for r in runs]  # fmt: skip


def median_ratios(rows: list[tuple]) -> str:
    ways = dict.fromkeys(row[1] for row in rows)
    return ", ".join(f"{way} {statistics.median(r[3] for r in rows if r[1] == way):.2f}"
                     for way in ways if not way.startswith("one run"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    ways = [("one run", 1, None), (f"{args.seeds} seeds, hydra/launcher=together", args.seeds,
            "together"), (f"{args.seeds} seeds one after another", args.seeds, None)]  # fmt: skip
    rows, accuracies = [], {}
    load_before = os.getloadavg()
    for round_ in range(1, args.rounds + 1):
        single = None
        for name, seeds, launcher in ways:
            with tempfile.TemporaryDirectory(prefix="mnist-seeds-") as tmp:
                print(f"round {round_}: {name} ...", flush=True)
                wall = timed(command(Path(tmp), seeds, launcher), env)
                runs = recorded(Path(tmp))
            single = single or wall
            accuracies.setdefault(name, {}).update({r["seed"]: r["acc"] for r in runs})
            rows.append((round_, name, wall, wall / single, statistics.mean(r["fit"] for r in runs),
                         statistics.mean(r["beyond_fit"] for r in runs),
                         statistics.mean(r["logging"] for r in runs)))  # fmt: skip
            print(f"  wall {wall:.1f} s ({wall / single:.2f}x one run)", flush=True)
    lines = [
        f"\n## Seeds at the price of one run ({time.strftime('%Y-%m-%d %H:%M')})\n",
        f"`bench/seeds_together.py {' '.join(sys.argv[1:])}`: the baseline (full MNIST, 10 "
        f"epochs, train.backend=auto), each command whole, in a fresh store. {cpu_line()} Load "
        f"average before: {' '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.\n",
        "| round | command | wall s | ÷ one run | fit s per run | s per run beyond its fit | "
        "of which logging |",
        "|---:|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r} | {n} | {w:.1f} | {x:.2f} | {f:.1f} | {b:.1f} | {g:.2f} |"
            for r, n, w, x, f, b, g in rows
        ),  # fmt: skip
        "",
        f"Median ÷ one run: {median_ratios(rows)}. *Beyond its fit*: from the run's start to its "
        "end, less its fit (data, evaluation, logging; with `together` the logging overlaps the "
        "worker's next fit). *Of which logging*: from its test metrics to its end (the five "
        "figures, the model, the run log), wall time.",
        "",
        "Test accuracy per seed (the same seed must give the same model either way):",
        "",
        "| command | " + " | ".join(f"seed {s}" for s in range(1, args.seeds + 1)) + " |",
        "|---|" + "---:|" * args.seeds,
        *(
            f"| {n} | "
            + " | ".join(f"{acc.get(s, float('nan')):.4f}" for s in range(1, args.seeds + 1))
            + " |"
            for n, acc in accuracies.items()
            if len(acc) > 1
        ),  # fmt: skip
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
