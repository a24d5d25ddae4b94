"""`python -m mnist_exp.data`: the cache verified, or one line saying why not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mnist_exp.training import mnist as mnist_data
from tests.helpers import LIBRARY_LINES


def test_data_cli_verifies_the_cache(offline_copy):
    done = subprocess.run(
        [sys.executable, "-m", "mnist_exp.data", "--cache-dir", str(offline_copy)],
        capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "MNIST ok (source: cache)" in done.stdout
    assert "5923 6742 5958 6131 5842 5421 5918 6265 5851 5949" in done.stdout


def test_data_cli_reports_failure_in_one_line(tmp_path):
    args = ["--cache-dir", str(tmp_path), "--sources", "cache"]
    done = subprocess.run(
        [sys.executable, "-m", "mnist_exp.data", *args],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "error: Could not obtain MNIST" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_fresh_fetch_says_where_mnist_came_from_and_nothing_else(offline_copy):
    """The first `make baseline` on a new machine: no cache yet, Keras's download tried (it loads
    TensorFlow, whose C++ start-up lines once reached the console here) before the mirror."""
    (offline_copy / mnist_data.CACHE_FILE).unlink()
    done = subprocess.run(
        [sys.executable, "-m", "mnist_exp.data", "--cache-dir", str(offline_copy)],
        capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    assert "MNIST source 'keras' unavailable" in console  # tried, and said in one line
    assert "MNIST ok (source: mirror)" in done.stdout
    assert not LIBRARY_LINES.search(console), console
