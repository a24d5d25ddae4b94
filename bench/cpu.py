"""What every benchmark reports with: the CPU it ran on (results differ by CPU: AVX-512, bf16,
cores), and its table printed and appended to RESULTS.md."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mnist_exp.training.hardware import cpu_flags, cpu_model  # noqa: E402

# The flags that change which kernels TensorFlow and oneDNN run.
FLAGS_THAT_MATTER = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
                     "amx_tile", "avx_vnni")  # fmt: skip


def cpu_line() -> str:
    """One line: model, cores, and which of the flags that matter it has and lacks."""
    flags = cpu_flags()
    has = [f for f in FLAGS_THAT_MATTER if f in flags]
    lacks = [f for f in FLAGS_THAT_MATTER if f not in flags]
    return (f"CPU: {cpu_model()}, {os.cpu_count()} cores; flags: {' '.join(has) or 'none'}"
            f"{'; no ' + ' '.join(lacks) if lacks else ''}.{capped()}")  # fmt: skip


def capped() -> str:
    """The instructions the libraries were told to stop at, if any: a CPU without AVX-512 is
    imitated on one that has it by capping XLA's code generator and oneDNN's kernels (only
    their instructions: caches, clocks and the rest are still this CPU's)."""
    caps = [f"XLA_FLAGS={v}" for v in [os.environ.get("XLA_FLAGS", "")] if "max_isa" in v]
    caps += [f"ONEDNN_MAX_CPU_ISA={v}" for v in [os.environ.get("ONEDNN_MAX_CPU_ISA")] if v]
    return f" Instructions capped: {', '.join(caps)}." if caps else ""


def publish(lines: list[str], results: Path) -> None:
    """Print a benchmark's table and append it to `results` (bench/RESULTS.md)."""
    text = "\n".join(lines) + "\n"
    print(text)
    with open(results, "a") as out:
        out.write(text)
