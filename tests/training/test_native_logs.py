"""A quiet console: none of TensorFlow's C++ start-up lines, while real errors still show; and
MNIST_EXP_LIBRARY_LOGS=1 to bring the libraries' output back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mnist_exp.training.native_logs import CHATTER
from tests.helpers import LEAKY_ENV, LIBRARY_LINES

LOAD_AND_FAIL = """
import os, sys
from mnist_exp.training import backend
backend.use_backend("tensorflow")
backend.load_keras()
import tensorflow as tf
tf.constant(1.0) + 1  # the first op: nothing more may appear
os.write(2, b"E0000 00:00:1.0   1 some_op.cc:12] a real error, from C++\\n")
raise RuntimeError("a real crash, from Python")
"""


def run_python(script: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (*LEAKY_ENV, "TF_CPP_MIN_LOG_LEVEL")}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**clean, **env}, timeout=300)  # fmt: skip


def test_the_filter_drops_tensorflows_start_up_lines_and_nothing_else():
    for line in ("WARNING: All log messages before absl::InitializeLog() is called are written "
                 "to STDERR",
                 "I0000 00:00:1796409467.4   6350 port.cc:153] oneDNN custom operations are on.",
                 "E0000 00:00:1796409467.4   6350 cuda_platform.cc:52] failed call to cuInit: "
                 "INTERNAL: CUDA error"):  # fmt: skip
        assert CHATTER.fullmatch(line), line
    for line in ("E0000 00:00:1.0   1 some_op.cc:12] a real error",
                 "F0000 00:00:1.0   1 port.cc:153] fatal", "Traceback (most recent call last):",
                 "[2026-12-04][mnist_exp][INFO] - Done: test_accuracy=0.97"):  # fmt: skip
        assert not CHATTER.fullmatch(line), line


@pytest.mark.slow
def test_loading_tensorflow_is_quiet_but_real_errors_show_and_the_switch_brings_it_all_back():
    done = run_python(LOAD_AND_FAIL)
    assert done.returncode == 1
    assert not LIBRARY_LINES.search(done.stderr), done.stderr
    assert "some_op.cc:12] a real error, from C++" in done.stderr
    assert "RuntimeError: a real crash, from Python" in done.stderr
    chatty = run_python(LOAD_AND_FAIL, MNIST_EXP_LIBRARY_LOGS="1")
    assert "absl::InitializeLog" in chatty.stderr and "cuInit" in chatty.stderr


@pytest.mark.slow
def test_a_sweep_prints_none_of_the_libraries_lines(tiny_sweep):
    console = (tiny_sweep.root.parent / "console.txt").read_text()
    assert "Sweep FINISHED" in console
    assert not LIBRARY_LINES.search(console), LIBRARY_LINES.search(console)
