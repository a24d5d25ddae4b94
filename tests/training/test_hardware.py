"""`precision=auto` and oneDNN follow what the hardware runs natively, here and on other CPUs."""

from __future__ import annotations

import subprocess

import pytest

from mnist_exp.training import hardware

ZEN3 = frozenset({"sse4_2", "avx", "avx2", "fma", "bmi2"})  # AVX2 only: the machine
SAPPHIRE_RAPIDS = ZEN3 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
ZEN4 = ZEN3 | {"avx512f", "avx512_vnni", "avx512_bf16"}


@pytest.mark.parametrize(
    ("flags", "gpu_bf16", "expected"),
    [
        (ZEN3, False, "float32"),
        (ZEN4, False, "mixed_bfloat16"),
        (SAPPHIRE_RAPIDS, False, "mixed_bfloat16"),
        (ZEN3 | {"amx_bf16"}, False, "mixed_bfloat16"),
        (ZEN3 | {"avx512f", "avx512_vnni"}, False, "float32"),  # AVX-512 alone is not bf16
        (frozenset(), False, "float32"),  # no /proc/cpuinfo (macOS)
        (ZEN3, True, "mixed_bfloat16"),  # an Ampere or newer GPU
    ],
)
def test_auto_is_bfloat16_only_where_the_hardware_runs_it_natively(flags, gpu_bf16, expected):
    assert hardware.resolve_precision("auto", flags, gpu_bf16) == expected


@pytest.mark.parametrize("choice", ["float32", "mixed_bfloat16"])
def test_an_explicit_precision_is_kept_on_any_hardware(choice):
    for flags in (ZEN3, SAPPHIRE_RAPIDS):
        assert hardware.resolve_precision(choice, flags, gpu_bf16=False) == choice


def test_auto_on_this_machine_follows_lscpu():
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    flags = next(line for line in lscpu.splitlines() if line.startswith("Flags:")).split()[1:]
    native = bool({"avx512_bf16", "amx_bf16"} & set(flags)) or hardware.gpus_run_bf16()
    assert hardware.cpu_flags() == frozenset(flags)
    assert hardware.precision_here("auto") == ("mixed_bfloat16" if native else "float32")


def test_onednn_is_turned_on_for_convolutions_on_x86_unless_the_user_chose():
    assert hardware.onednn_setting("x86_64", {}, convolutional=True) == "1"
    assert hardware.onednn_setting("AMD64", {}, convolutional=True) == "1"
    assert hardware.onednn_setting("x86_64", {}, convolutional=False) is None  # slower for dense
    chosen = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert hardware.onednn_setting("x86_64", chosen, convolutional=True) is None
    assert hardware.onednn_setting("aarch64", {}, convolutional=True) is None  # TF's own choice


def test_a_dense_network_too_big_for_this_machine_is_refused_before_it_is_built():
    # XLA's compiler aborts the process on such a model (JAX); TensorFlow raised, and now both
    # raise before building, so only the job fails.
    from mnist_exp.config import DenseConfig
    from mnist_exp.training.models import build_dense

    with pytest.raises(MemoryError, match=r"model.hidden=1000000000: 795,0\d\d,000,010 weights"):
        build_dense(DenseConfig(hidden=10**9))
