"""The CPU a run's five figures cost, drawn as every run logs them, in one process.

    .venv/bin/python bench/figures.py            # 5 rounds
    .venv/bin/python bench/figures.py --rounds 3

MNIST's test images with the baseline's share of mistakes (2.4 %), made and saved as PNG the way
tracking.outcome saves them: with FreeType's hinting (matplotlib's default) and without
(`plots.drawing_quickly`, what runs use), alternating within each round so a busy machine slows
both alike. samples.png is the same in every run of a sweep, so a process draws it once
(`outcome.samples_png`): its line is what that saves per run. Appends to RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cpu import cpu_line, publish  # noqa: E402

from mnist_exp.composition import default_config  # noqa: E402
from mnist_exp.tracking import outcome  # noqa: E402
from mnist_exp.training import plots, train  # noqa: E402
from mnist_exp.training.mnist import load_mnist  # noqa: E402


def figures(mnist) -> dict:
    """What a run draws (tracking.outcome), on MNIST's test set with the baseline's share of
    mistakes (2.4 %)."""
    rng = np.random.default_rng(0)
    y = mnist.y_test.astype(int)
    predicted = np.where(rng.random(len(y)) < 0.024, (y + rng.integers(1, 10, len(y))) % 10, y)
    probabilities = np.full((len(y), 10), 0.01, np.float32)
    probabilities[np.arange(len(y)), predicted] = rng.uniform(0.5, 0.99, len(y))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    history = {k: list(rng.uniform(0.9, 1.0, 10)) for k in ("accuracy", "val_accuracy")}
    history |= {k: list(rng.uniform(0.0, 0.3, 10)) for k in ("loss", "val_loss")}
    trained = outcome.Outcome(
        metrics={}, history=history, sample_images=mnist.x_train[: plots.SAMPLES],
        sample_labels=mnist.y_train[: plots.SAMPLES], x_test=mnist.x_test, y_test=y,
        probabilities=probabilities, model=None, run_log=None,
        misclassified_tiles=default_config().tracking.misclassified_tiles,
    )  # fmt: skip
    samples = {"samples.png": lambda: plots.sample_grid(trained.sample_images,
                                                        trained.sample_labels)}  # fmt: skip
    return samples | outcome.drawn_per_run(trained, train.confusion_matrix(y, probabilities))


def cpu_ms(draw, quickly: bool, repeats: int = 5) -> float:
    with plots.drawing_quickly() if quickly else contextlib.nullcontext():
        start = time.process_time()
        for _ in range(repeats):
            draw().savefig(io.BytesIO(), format="png")
        return (time.process_time() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    drawn = figures(load_mnist(default_config().data.cache_dir))
    for draw in drawn.values():  # fonts and caches loaded before anything is timed
        cpu_ms(draw, False, 1)
    times: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for name, draw in drawn.items():
            for quickly in (False, True):
                times.setdefault((name, quickly), []).append(cpu_ms(draw, quickly))
    median = {key: statistics.median(values) for key, values in times.items()}
    total = {q: sum(median[(n, q)] for n in drawn) for q in (False, True)}
    logged = total[True] - median[("samples.png", True)]
    lines = [
        f"\n## A run's five figures ({time.strftime('%Y-%m-%d %H:%M')})\n",
        f"`{' '.join(['bench/figures.py', *sys.argv[1:]])}`: CPU ms to make and save each as PNG, "
        f"median of {args.rounds} rounds of 5. {cpu_line()}\n",
        "| figure | hinted (matplotlib's default) | unhinted (`plots.drawing_quickly`) |",
        "|---|---:|---:|",
        *(f"| {n} | {median[(n, False)]:.0f} | {median[(n, True)]:.0f} |" for n in drawn),
        f"| all five | {total[False]:.0f} | {total[True]:.0f} |",
        "",
        f"A run logs {logged:.0f} ms of them: the four it draws unhinted; samples.png comes "
        f"drawn from its process, {total[False] - logged:.0f} ms fewer than all five hinted "
        f"({(total[False] - logged) / total[False]:.0%}).",
    ]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
