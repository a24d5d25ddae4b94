"""What is not training: a quick-look run and a 6-job quick sweep, against the tutorial's start-up.

    make bench                                   # after bench.py
    .venv/bin/python bench/overhead.py --baseline-python /path/to/other/checkout/.venv/bin/python

In one invocation, alternating: (a) the tutorial's code on the same 5000 images for 2 epochs,
whose time from process start to TensorFlow imported is the start-up yardstick; (b) the quick
look `mnist_exp.run data.limit_train=5000 train.epochs=2`; (c) the sweep
`-m model.hidden=8,16,24,32,40,48` of it. Start-up is process start to the first fit's first
step (from the epoch metrics' timestamps); overhead per job is (wall - start-up - sum of fits) /
jobs. --baseline-python runs (b) and (c) with another checkout's code too, for a before/after;
--backends tensorflow jax runs them on each Keras backend (JAX's runs import no TensorFlow before
their first step).
Appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from itertools import product
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cpu import cpu_line, publish  # noqa: E402

from mnist_exp.composition import default_config  # noqa: E402

QUICK = ["data.limit_train=5000", "train.epochs=2"]
SWEEP = ["-m", "model.hidden=8,16,24,32,40,48", *QUICK]


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far: the work done, which
    a busy machine stretches less than the wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tutorial(cache: Path, env: dict[str, str]) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "tutorial_mnist.py"), "--cache", str(cache),
           "--epochs", "2", "--limit-train", "5000"]  # fmt: skip
    spawned, cpu = time.time(), children_cpu()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    wall, cpu = time.time() - spawned, children_cpu() - cpu
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu, "fit": out["fit_seconds"], "jobs": 1,
            "tf_imported": out["imported_at"] - spawned,
            "startup": out["fit_started_at"] - spawned}  # fmt: skip


def ours(python: str, args: list[str], store: Path, env: dict[str, str]) -> dict:
    from mlflow import MlflowClient

    name = f"bench-{time.time_ns()}"
    cmd = [python, "-m", "mnist_exp.run", *args, f"tracking.uri=sqlite:///{store}/mlflow.db",
           f"tracking.artifact_location={store}/art", f"tracking.experiment={name}",
           f"hydra.run.dir={store}/h/{name}", f"hydra.sweep.dir={store}/h/{name}"]  # fmt: skip
    spawned, cpu = time.time(), children_cpu()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.time() - spawned, children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    runs = [r for r in client.search_runs([experiment.experiment_id])
            if "fit_seconds" in r.data.metrics]  # fmt: skip
    fit_starts = []
    for run in runs:
        (first,) = [m for m in client.get_metric_history(run.info.run_id, "epoch_seconds")
                    if m.step == 0]  # fmt: skip
        fit_starts.append(first.timestamp / 1000 - first.value)
    fits = sum(r.data.metrics["fit_seconds"] for r in runs)
    startup = min(fit_starts) - spawned
    return {"wall": wall, "cpu": cpu, "fit": fits, "jobs": len(runs), "startup": startup,
            "per_job": (wall - startup - fits) / len(runs)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline-python", help="another checkout's python, run as 'before'")
    parser.add_argument("--backends", nargs="+", default=["tensorflow"],
                        choices=["tensorflow", "jax"])  # fmt: skip
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    cache = Path(default_config().data.cache_dir) / "mnist.npz"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MNIST_EXP_DATA_DIR"] = str(cache.parent)
    pythons = {"": sys.executable}
    if args.baseline_python:
        pythons = {" (before)": args.baseline_python, " (after)": sys.executable}

    rows = []
    with tempfile.TemporaryDirectory(prefix="mnist-overhead-") as tmp:
        store = Path(tmp)
        subprocess.run([sys.executable, "-c", "import mlflow; mlflow.set_tracking_uri("
                        f"'sqlite:///{store}/mlflow.db'); mlflow.search_experiments()"],
                       env=env, check=True, capture_output=True)  # fmt: skip
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}: tutorial code ...", flush=True)
            yardstick = tutorial(cache, env)
            rows.append(("(a) tutorial code, 5000 images, 2 epochs", round_, yardstick))
            for (suffix, python), keras_backend in product(pythons.items(), args.backends):
                on = "" if keras_backend == "tensorflow" else f", train.backend={keras_backend}"
                for label, run_args in (("(b) quick look", QUICK), ("(c) 6-job sweep", SWEEP)):
                    label = f"{label}{on}{suffix}"
                    print(f"round {round_}: {label} ...", flush=True)
                    run_args = [*run_args, f"train.backend={keras_backend}"]
                    result = ours(python, run_args, store, env)
                    result["vs_tf_import"] = result["startup"] - yardstick["tf_imported"]
                    rows.append((label, round_, result))
                    print(f"  wall {result['wall']:.1f}s, fit {result['fit']:.1f}s", flush=True)
            yardstick["vs_tf_import"] = yardstick["startup"] - yardstick["tf_imported"]

    lines = [
        f"\n## What is not training: quick look and quick sweep\n\n`bench/overhead.py "
        f"{' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d %H:%M')}. {cpu_line()} "
        "Start-up: process start to the first fit's first step. The tutorial's TensorFlow "
        "import (process start to `from tensorflow import keras` done) is measured in the same "
        "round; *start-up − TF import* is what comes on top of it (the goal: ≤ 2 s). Per job: "
        "(wall − start-up − Σ fit) / jobs (the goal: ≤ 1 s).\n",
        "| what | round | jobs | wall s | CPU s | Σ fit s | start-up s | TF import s | "
        "start-up − TF import s | per job s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, round_, r in rows:
        tf_import = next(x for lab, rnd, x in rows if rnd == round_ and lab.startswith("(a)"))
        per_job = f"{r['per_job']:.1f}" if "per_job" in r else ""
        lines.append(f"| {label} | {round_} | {r['jobs']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                     f"{r['fit']:.1f} | "
                     f"{r['startup']:.1f} | {tf_import['tf_imported']:.1f} | "
                     f"{r['vs_tf_import']:.1f} | {per_job} |")  # fmt: skip
    publish(lines, args.results)


if __name__ == "__main__":
    main()
