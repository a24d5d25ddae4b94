"""The package's layers, as import-linter's contracts in pyproject.toml state them: imports only
go down, training never imports MLflow or Hydra, and no modules import each other in a cycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from mnist_exp.config import PROJECT_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path, package_root: Path | None = None) -> subprocess.CompletedProcess:
    """`lint-imports` with root's contracts (pyproject.toml), over the package found first on
    PYTHONPATH=package_root (root itself by default)."""
    env = {**os.environ, "PYTHONPATH": str(package_root or root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_package_keeps_its_import_contracts():
    done = lint_imports(PROJECT_ROOT, PROJECT_ROOT / "src")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_a_wrong_import_breaks_each_contract(tmp_path):
    shutil.copytree(PROJECT_ROOT / "src" / "mnist_exp", tmp_path / "mnist_exp")
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    package = tmp_path / "mnist_exp"
    wrong = {
        "training/plots.py": "import mlflow",  # training must not know MLflow
        "tracking/queries.py": "from mnist_exp.sweeps import job",  # upwards, sweeps above
        "tracking/uris.py": "from mnist_exp.tracking import runs",  # runs -> outage -> uris
    }
    for module, line in wrong.items():
        with open(package / module, "a") as f:
            f.write(f"\n\ndef _deferred():\n    {line}\n")  # inside a function: still counted
    done = lint_imports(tmp_path)
    assert done.returncode == 1
    assert "Contracts: 0 kept, 3 broken." in done.stdout
    assert "mnist_exp.training.plots -> mlflow" in done.stdout
    assert "mnist_exp.tracking.queries -> mnist_exp.sweeps.job" in done.stdout
    assert "No cycles are allowed in mnist_exp.tracking" in done.stdout
