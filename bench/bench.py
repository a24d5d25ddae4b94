"""Side-by-side speed benchmark: the tutorial's own code against `python -m mnist_exp.run`.

    make bench                      # dense and CNN, 10 epochs, one round
    .venv/bin/python bench/bench.py --models dense --rounds 2
    .venv/bin/python bench/bench.py --models dense --no-literal   # (a), (b) and (d): ~3 min

For each model it runs, alternating within one invocation on the same machine and data:
  (a) bench/tutorial_mnist.py: the tutorial as written (float64 input, Keras's default fit);
  (b) mnist_exp.run with the same hyperparameters and seed, MLflow tracking and artifacts on,
      on the backend train.backend=auto (the default) picks: JAX for dense, TensorFlow for CNN;
  (c) mnist_exp.run train=literal: (b) without the fast path, to isolate the framework's cost;
  (d) mnist_exp.run on the other backend, the one auto did not pick (for the models in
      --other-backend-models: the dense one, on the tutorial's TensorFlow, by default).
Each is a fresh process; wall time and peak memory come from the OS (wait4), fit time and test
accuracy from the process itself (a) or from the MLflow run it recorded (b, c). Ratios are
against (a) of the same round, so a busy machine slows both sides alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cpu import cpu_line  # noqa: E402

from mnist_exp.composition import default_config  # noqa: E402

PRESET = {"dense": "+experiment=baseline", "cnn": "+experiment=cnn"}
# The backend train.backend=auto does not pick for each model (choices.FASTEST_BACKEND).
OTHER_BACKEND = {"dense": "tensorflow", "cnn": "jax"}


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB, and stdout of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        output = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"benchmark step failed: {' '.join(cmd)}\n{output[-3000:]}")
    return wall, usage.ru_maxrss / 1024, output


def run_tutorial(model: str, epochs: int, cache: Path, env: dict[str, str]) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "tutorial_mnist.py"), "--cache", str(cache),
           "--model", model, "--epochs", str(epochs)]  # fmt: skip
    wall, rss, output = timed(cmd, env)
    result = json.loads(output.strip().splitlines()[-1])
    return {**result, "wall_seconds": wall, "peak_rss_mb": rss}


def run_ours(model: str, epochs: int, store: Path, extra: list[str], env: dict[str, str]) -> dict:
    from mlflow import MlflowClient

    experiment = f"bench-{model}"
    cmd = [sys.executable, "-m", "mnist_exp.run", PRESET[model], f"train.epochs={epochs}",
           f"tracking.uri=sqlite:///{store}/mlflow.db", f"tracking.artifact_location={store}/art",
           f"tracking.experiment={experiment}", f"hydra.run.dir={store}/hydra/{time.time_ns()}",
           *extra]  # fmt: skip
    wall, rss, _ = timed(cmd, env)
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id], order_by=["start_time DESC"], max_results=1)
    epoch_seconds = [m.value for m in client.get_metric_history(run.info.run_id, "epoch_seconds")]
    return {
        "fit_seconds": run.data.metrics["fit_seconds"],
        "test_accuracy": run.data.metrics["test_accuracy"],
        "steady_epoch_seconds": statistics.median(epoch_seconds[1:] or epoch_seconds),
        "wall_seconds": wall,
        "peak_rss_mb": rss,
    }


def warm_store(store: Path, env: dict[str, str]) -> None:
    """Create the SQLite store first, as a user's store already exists after their first run."""
    uri = f"sqlite:///{store}/mlflow.db"
    code = f"import mlflow; mlflow.set_tracking_uri({uri!r}); mlflow.search_experiments()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)


def table(rows: list[dict], epochs: int) -> str:
    lines = [
        "| model | variant | fit s | s/epoch | wall s | wall − fit s | peak RSS MB | test acc | "
        "fit ×faster than (a) | wall ÷ (a) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['fit_seconds']:.1f} "
            f"| {r['fit_seconds'] / epochs:.2f} "
            f"| {r['wall_seconds']:.1f} | {r['wall_seconds'] - r['fit_seconds']:.1f} "
            f"| {r['peak_rss_mb']:.0f} | {r['test_accuracy']:.4f} | {r['fit_speedup']:.2f} "
            f"| {r['wall_ratio']:.2f} |"
        )
    return "\n".join(lines)


def load(average: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in average)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=list(PRESET), default=list(PRESET))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-literal", action="store_true", help="skip variant (c)")
    parser.add_argument("--other-backend-models", nargs="*", choices=list(PRESET),
                        default=["dense"], help="models to time on the other backend too, "
                        "variant (d); none: skip it")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()

    cache = Path(default_config().data.cache_dir) / "mnist.npz"
    if not cache.exists():
        sys.exit(f"{cache} is missing: run `make data` first")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MNIST_EXP_DATA_DIR"] = str(cache.parent)

    variants = [("(a) tutorial code", None), ("(b) mnist_exp.run", [])]
    if not args.no_literal:
        variants.append(("(c) mnist_exp.run train=literal", ["train=literal"]))
    if importlib.util.find_spec("jax") is None:
        print("JAX is not installed (pip install -e '.[jax]'): no variant (d)", file=sys.stderr)
        args.other_backend_models = []
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as tmp:
        store = Path(tmp)
        warm_store(store, env)
        for round_ in range(1, args.rounds + 1):
            for model in args.models:
                baseline = None
                other = OTHER_BACKEND[model]
                switched = (f"(d) mnist_exp.run train.backend={other}", [f"train.backend={other}"])
                more = [switched] if model in args.other_backend_models else []
                for variant, extra in variants + more:
                    print(f"round {round_}, {model}: {variant} ...", flush=True)
                    if extra is None:
                        result = run_tutorial(model, args.epochs, cache, env)
                        baseline = result
                    else:
                        result = run_ours(model, args.epochs, store, extra, env)
                    result.update(
                        model=model,
                        variant=variant,
                        round=round_,
                        fit_speedup=baseline["fit_seconds"] / result["fit_seconds"],
                        wall_ratio=result["wall_seconds"] / baseline["wall_seconds"],
                    )
                    rows.append(result)
                    fit, wall = result["fit_seconds"], result["wall_seconds"]
                    print(f"  fit {fit:.1f}s, wall {wall:.1f}s, acc {result['test_accuracy']:.4f}")

    header = (
        f"# Benchmark: tutorial code vs mnist_exp.run\n\n"
        f"`{' '.join(['bench/bench.py', *sys.argv[1:]])}` on {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPU cores, {args.epochs} epochs, batch 32, validation_split 0.2, "
        "seed 42. Ratios are against (a) of the same round. *wall − fit* is everything that is "
        "not training: interpreter and library start-up, data, evaluation, plots, MLflow "
        f"logging, exit. {cpu_line()} Load average (1, 5, 15 min) before: {load(load_before)}, "
        f"after: {load(os.getloadavg())}; the machine may be shared.\n\n"
    )
    # This table replaces the previous one; the sections other benchmarks append stay.
    previous = args.out.read_text() if args.out.exists() else ""
    others = previous[previous.find("\n## ") :] if "\n## " in previous else ""
    args.out.write_text(header + table(rows, args.epochs) + "\n" + others)
    (args.out.parent / "results").mkdir(exist_ok=True)
    (args.out.parent / "results" / "latest.json").write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows, args.epochs) + f"\n\nwritten to {args.out}")


if __name__ == "__main__":
    main()
