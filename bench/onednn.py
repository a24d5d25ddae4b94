"""oneDNN on and off, side by side: the tutorial's own code, dense and CNN, in one invocation.

    .venv/bin/python bench/onednn.py                 # 2 epochs each, one round
    .venv/bin/python bench/onednn.py --epochs 1 --rounds 2

TF_ENABLE_ONEDNN_OPTS is read once, at TensorFlow's import, so each setting is a fresh process.
"on, AVX2 only" caps oneDNN's instruction set (ONEDNN_MAX_CPU_ISA) to what an AVX2-only CPU such
as Zen 3 has, which is where TensorFlow leaves oneDNN off by default. Appends to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cpu import cpu_line, publish  # noqa: E402  (bench/ is on sys.path as the script's directory)

from mnist_exp.composition import default_config  # noqa: E402

SETTINGS = {
    "off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "on": {"TF_ENABLE_ONEDNN_OPTS": "1"},
    "on, AVX2 only": {
        "TF_ENABLE_ONEDNN_OPTS": "1",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
    },  # fmt: skip
}


def fit_seconds(model: str, epochs: int, cache: Path, env: dict[str, str]) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "tutorial_mnist.py"), "--cache", str(cache),
           "--model", model, "--epochs", str(epochs)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["dense", "cnn"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    cache = Path(default_config().data.cache_dir) / "mnist.npz"
    base_env = {k: v for k, v in os.environ.items() if k not in SETTINGS["on, AVX2 only"]}

    rows = []
    for round_ in range(1, args.rounds + 1):
        for model in args.models:
            for label, extra in SETTINGS.items():
                print(f"round {round_}, {model}, oneDNN {label} ...", flush=True)
                result = fit_seconds(model, args.epochs, cache, {**base_env, **extra})
                rows.append({"model": model, "setting": label, "round": round_, **result})
                print(f"  fit {result['fit_seconds']:.1f}s, CPU {result['fit_cpu_seconds']:.1f}s")
    lines = [
        f"\n## oneDNN\n\n`bench/onednn.py {' '.join(sys.argv[1:])}` on "
        f"{time.strftime('%Y-%m-%d %H:%M')}: the tutorial's code, {args.epochs} epochs on all "
        f"60k images, each setting a fresh process, interleaved. {cpu_line()}\n",
        "| model | round | oneDNN | fit s | fit CPU s | × faster than off (wall) | "
        "× less CPU than off | test acc |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        off = next(o for o in rows if o["model"] == r["model"] and o["round"] == r["round"]
                   and o["setting"] == "off")  # fmt: skip
        speedup = off["fit_seconds"] / r["fit_seconds"]
        cpu_ratio = off["fit_cpu_seconds"] / r["fit_cpu_seconds"]
        lines.append(f"| {r['model']} | {r['round']} | {r['setting']} | {r['fit_seconds']:.1f} | "
                     f"{r['fit_cpu_seconds']:.1f} | {speedup:.2f} | {cpu_ratio:.2f} | "
                     f"{r['test_accuracy']:.4f} |")  # fmt: skip
    publish(lines, args.results)


if __name__ == "__main__":
    main()
