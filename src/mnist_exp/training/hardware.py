"""What this machine computes fast: bfloat16 natively or not, and whether to turn oneDNN on.

Read from /proc/cpuinfo and the GPUs, so a preset can ask for `precision=auto` and get the fast
choice on every machine rather than the one it was tuned on (bench/RESULTS.md, "Precision").
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from pathlib import Path

from mnist_exp.training.backend import is_jax

AUTO = "auto"
BFLOAT16 = "mixed_bfloat16"
FLOAT32 = "float32"

# x86 instructions that do bfloat16 arithmetic natively. Without them Keras's mixed_bfloat16
# emulates it, measured 7x slower for the tutorial CNN on a Zen 3 (AVX2 only).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# NVIDIA GPUs run bfloat16 from compute capability 8.0 (Ampere) on.
BF16_GPU_CAPABILITY = (8, 0)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (`lscpu`'s Flags); empty where there is no
    /proc/cpuinfo (macOS, Windows), which then counts as no native bfloat16."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, ARM
            return frozenset(value.split())
    return frozenset()


def cpu_model() -> str:
    """`lscpu`'s model name, for benchmark tables: results differ by CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_precision(requested: str, flags: frozenset[str], gpu_bf16: bool) -> str:
    """`auto` is mixed_bfloat16 where the hardware runs bfloat16 natively, float32 elsewhere;
    an explicit choice is kept as it is."""
    if requested != AUTO:
        return requested
    return BFLOAT16 if gpu_bf16 or flags & BF16_CPU_FLAGS else FLOAT32


def gpus_run_bf16() -> bool:
    """Whether Keras's backend sees a GPU, every one of them able to run bfloat16."""
    if is_jax():
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        # CUDA devices say e.g. "8.6"; others (ROCm) do not, and count as unknown.
        capabilities = [str(getattr(gpu, "compute_capability", "0.0")) for gpu in gpus]
        capabilities = [tuple(int(n) for n in c.split(".")[:2]) for c in capabilities]
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
        capabilities = [tuple(d.get("compute_capability") or (0, 0)) for d in details]
    return bool(gpus) and all(c >= BF16_GPU_CAPABILITY for c in capabilities)


def precision_here(requested: str) -> str:
    """`requested`, with `auto` resolved for this machine."""
    if requested != AUTO:
        return requested
    return resolve_precision(requested, cpu_flags(), gpus_run_bf16())


def onednn_setting(machine: str, environ: dict[str, str], convolutional: bool) -> str | None:
    """The TF_ENABLE_ONEDNN_OPTS to set before TensorFlow loads, or None to leave its choice.

    On x86-64, TensorFlow turns oneDNN on by itself only on CPUs with AVX512_VNNI, AVX512_BF16,
    AVX_VNNI or AMX, and leaves it off on AVX2-only ones (Zen 3). oneDNN made the tutorial CNN
    faster on both kinds of CPU, but not the tutorial's dense network (bench/RESULTS.md,
    "oneDNN"): so on for convolutional models only. A user's own setting wins.
    """
    if "TF_ENABLE_ONEDNN_OPTS" in environ or machine.lower() not in ("x86_64", "amd64"):
        return None
    return "1" if convolutional else None


def use_onednn_if_it_pays(convolutional: bool, backend: str = "tensorflow") -> None:
    """Set TF_ENABLE_ONEDNN_OPTS per `onednn_setting`, if TensorFlow is not loaded yet (it reads
    it once: in a sweep, the first job decides for the whole process). TensorFlow's only: a JAX
    run leaves it alone."""
    if "tensorflow" in sys.modules or backend != "tensorflow":
        return
    setting = onednn_setting(platform.machine(), dict(os.environ), convolutional)
    if setting is not None:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = setting


def onednn_enabled() -> bool:
    """Whether TensorFlow in this process uses oneDNN (as set before it was imported)."""
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting is not None:
        return setting.strip().lower() in ("1", "true")
    # TensorFlow's own default on x86-64 Linux (util/port.cc: IsMklEnabled).
    return bool(cpu_flags() & {"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile"})


# Bytes a float32 weight costs while it trains: itself, its gradient and Adam's two moments.
TRAINING_BYTES_PER_WEIGHT = 4 * 4


def check_memory_for(weights: int, what: str) -> None:
    """Refuse a model that cannot train in this machine's memory, before anything allocates it:
    TensorFlow fails such a model with ResourceExhaustedError, but XLA's CPU compiler (JAX)
    aborts the whole process, which would end a sweep rather than one job."""
    import psutil

    needed, total = weights * TRAINING_BYTES_PER_WEIGHT, psutil.virtual_memory().total
    if needed > total:
        raise MemoryError(
            f"{what}: {weights:,} weights need about {needed / 2**30:,.0f} GiB to train, more "
            f"than this machine's {total / 2**30:,.0f} GiB of memory"
        )
