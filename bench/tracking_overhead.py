"""What logging a run's data sets and system metrics adds to it: an empty 5 s run, four ways.

.venv/bin/python bench/tracking_overhead.py    # ~1 min; results in bench/RESULTS.md by hand
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import mlflow
from cpu import cpu_line  # bench/ is on sys.path as the script's directory

from mnist_exp.composition import default_config
from mnist_exp.tracking import datasets as run_datasets
from mnist_exp.tracking import runs
from mnist_exp.training import data
from mnist_exp.training.mnist import load_mnist

RUN_SECONDS = 5.0
REPEATS = 3


def overhead(prepared, cache_dir: str, system_metrics: bool, datasets: bool) -> float:
    start = time.perf_counter()
    with runs.job_run({"bench": 1}, "overhead", 2.0 if system_metrics else None):
        if datasets:
            run_datasets.log_datasets(prepared, cache_dir)
        time.sleep(RUN_SECONDS)
    return time.perf_counter() - start - RUN_SECONDS


def main() -> None:
    cache_dir = default_config().data.cache_dir
    prepared = data.prepare(load_mnist(cache_dir, ["cache"]))  # full MNIST
    root = Path(tempfile.mkdtemp())
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench", f"{root}/artifacts"))
    overhead(prepared, cache_dir, True, True)  # warm-up: first run, imports
    print(cpu_line())
    for system_metrics, datasets in ((False, False), (True, False), (False, True), (True, True)):
        seconds = sorted(overhead(prepared, cache_dir, system_metrics, datasets)
                         for _ in range(REPEATS))  # fmt: skip
        low, median, high = seconds[0], seconds[REPEATS // 2], seconds[-1]
        print(f"system metrics {system_metrics!s:5}  datasets {datasets!s:5}  run overhead "
              f"median {median:.3f} s  (min {low:.3f}, max {high:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
