"""Seeds at the price of one run: the baseline once, against five seeds of it, side by side.

    make bench-seeds                              # full MNIST, 10 epochs, 2 rounds
    .venv/bin/python bench/seeds_together.py --rounds 1 --seeds 3

Alternating within one invocation, each command whole and in a fresh store:
  (1) python -m mnist_exp.run +experiment=baseline seed=1           one run
  (2) ... -m hydra/launcher=together seed=1,...,N                    N seeds together
  (3) ... -m seed=1,...,N                                            N seeds one after another
Wall time is the whole command's; fit seconds, test accuracy, each job's time beyond its fit in
its process and each run's logging CPU come from the runs MLflow recorded. Ratios are
against (1) of the same round, so a busy machine slows both sides alike. Appends to RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
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
    return [{"seed": int(r.data.params["seed"]), "fit": r.data.metrics["fit_seconds"],
             "acc": r.data.metrics["test_accuracy"], "pid": r.data.tags["pid"],
             "start": r.info.start_time / 1000,
             "logging_cpu": r.data.metrics["logging_cpu_seconds"]}
            for r in runs]  # fmt: skip


def beyond_fit(runs: list[dict]) -> list[float]:
    """Each job's seconds beyond its fit in the process that ran it: from its run's start to the
    start of that process's next run, less its fit (evaluation, handing its logging over, the
    next job's set-up, and the logging's share of the process). Jobs with a next one only."""
    by_process: dict[str, list[dict]] = {}
    for run in sorted(runs, key=lambda r: r["start"]):
        by_process.setdefault(run["pid"], []).append(run)
    return [b["start"] - a["start"] - a["fit"] for jobs in by_process.values()
            for a, b in zip(jobs, jobs[1:], strict=False)]  # fmt: skip


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
            beyond = beyond_fit(runs)
            rows.append((round_, name, wall, wall / single, statistics.mean(r["fit"] for r in runs),
                         statistics.mean(beyond) if beyond else float("nan"),
                         statistics.mean(r["logging_cpu"] for r in runs)))  # fmt: skip
            print(f"  wall {wall:.1f} s ({wall / single:.2f}x one run)", flush=True)
    lines = [
        f"\n## Seeds at the price of one run ({time.strftime('%Y-%m-%d %H:%M')})\n",
        f"`bench/seeds_together.py {' '.join(sys.argv[1:])}`: the baseline (full MNIST, 10 "
        f"epochs, train.backend=auto), each command whole, in a fresh store. {cpu_line()} Load "
        f"average before: {' '.join(f'{x:.2f}' for x in load_before)}, after: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.\n",
        "| round | command | wall s | ÷ one run | fit s per run | s per job beyond its fit | "
        "logging CPU s per run |",
        "|---:|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r} | {n} | {w:.1f} | {x:.2f} | {f:.1f} | {'–' if math.isnan(b) else f'{b:.2f}'} | "
            f"{g:.2f} |"
            for r, n, w, x, f, b, g in rows
        ),  # fmt: skip
        "",
        f"Median ÷ one run: {median_ratios(rows)}. *Beyond its fit*: in the process that ran "
        "the job, from its run's start to that process's next run's start, less its fit "
        "(evaluation, handing the logging over, the next job's set-up, and whatever the logging "
        "thread took from it); jobs with a next one only. *Logging CPU*: the run's "
        "`logging_cpu_seconds`, the CPU time of the thread that logged its test metrics, five "
        "figures, model and run log.",
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
