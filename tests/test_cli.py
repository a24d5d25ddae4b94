"""The installed commands: each `mnist-exp-*` script is the module's own CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = ["mnist-exp-run", "mnist-exp-compare", "mnist-exp-predict", "mnist-exp-data",
           "mnist-exp-server", "mnist-exp-serve", "mnist-exp-team"]  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_is_installed_and_answers_help(script):
    path = Path(sys.executable).parent / script
    assert path.is_file(), f"{script} is not installed: run `make setup` (pip install -e .)"
    done = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower() or "powered by Hydra" in done.stdout
