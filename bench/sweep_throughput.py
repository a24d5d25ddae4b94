"""Sweep throughput: the same sweep one job at a time, then two at a time (hydra/launcher=parallel).

    make bench-sweep                                   # 6 dense jobs, full MNIST, 3 epochs each
    .venv/bin/python bench/sweep_throughput.py --widths 64,128 --epochs 1

Both sweeps log through the same kind of MLflow server (mnist_exp.server) into a fresh store, so
the only difference is the launcher. Jobs per minute come from the wall time of the whole
command; the per-job fit seconds from the runs MLflow recorded. Appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cpu import cpu_line, publish  # noqa: E402

from mnist_exp.server import tracking_server  # noqa: E402

LAUNCHERS = {"sequential": [], "parallel (2 jobs)": ["hydra/launcher=parallel"]}


def sweep(launcher: list[str], widths: str, epochs: int, store: Path, name: str) -> dict:
    from mlflow import MlflowClient

    with tracking_server(store) as uri:
        cmd = [sys.executable, "-m", "mnist_exp.run", "-m", *launcher, "tracking=server",
               f"tracking.experiment={name}", f"model.hidden={widths}", f"train.epochs={epochs}",
               f"hydra.sweep.dir={store}/multirun/{name}"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(cmd, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                              capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"sweep failed: {' '.join(cmd)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId != ''")
    jobs = len(runs)
    return {
        "jobs": jobs,
        "wall": wall,
        "jobs_per_minute": jobs * 60 / wall,
        "fit": statistics.median(r.data.metrics["fit_seconds"] for r in runs),
        "accuracy": statistics.mean(r.data.metrics["test_accuracy"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="32,64,128,256,512,1024")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, launcher in LAUNCHERS.items():
            print(f"{label}: model.hidden={args.widths}, {args.epochs} epochs ...", flush=True)
            result = sweep(launcher, args.widths, args.epochs, Path(tmp), label.split()[0])
            print(f"  {result['jobs']} jobs in {result['wall']:.1f} s", flush=True)
            rows.append((label, result))
    base = rows[0][1]["jobs_per_minute"]
    table = [
        f"\n## Sweep throughput\n\n`bench/sweep_throughput.py` on {datetime.now():%Y-%m-%d %H:%M}, "
        f"{os.cpu_count()} CPU cores: `model.hidden={args.widths}` (dense, full MNIST, "
        f"{args.epochs} epochs each), both sweeps logging through an MLflow server. {cpu_line()}\n",
        "| launcher | jobs | wall s | jobs/min | median fit s per job | mean test acc | "
        "throughput × sequential |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows:
        speedup = r["jobs_per_minute"] / base
        table.append(f"| {label} | {r['jobs']} | {r['wall']:.1f} | {r['jobs_per_minute']:.2f} | "
                     f"{r['fit']:.1f} | {r['accuracy']:.4f} | {speedup:.2f} |")  # fmt: skip
    publish(table, args.results)


if __name__ == "__main__":
    main()
