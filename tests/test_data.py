"""`python -m mnist_exp.data`: the cache verified, or one line saying why not."""

from __future__ import annotations

import os
import subprocess
import sys


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
