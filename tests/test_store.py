"""Where runs are recorded: a fresh SQLite store opened by many processes at once, and the
store and path mistakes a user makes, each refused with one line that names it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import TINY, cli_env, hydra_dirs


@pytest.mark.slow
def test_three_first_runs_at_once_on_a_fresh_store_all_finish(store, tmp_path, mnist_dir):
    """Before the schema lock, 3 of 3 tries had runs die in MLflow's schema creation
    (`duplicate column name: step`, `table _alembic_tmp_tags already exists`)."""
    assert not store.root.exists()

    def start(width: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "mnist_exp.run", f"model.hidden={width}", *TINY,
             *store.overrides, *hydra_dirs(tmp_path / str(width))],
            cwd=tmp_path, env=cli_env(mnist_dir), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip

    procs = [start(width) for width in (8, 16, 24)]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], "\n".join(outputs)
    runs = store.runs()
    assert sorted(int(r.data.params["model.hidden"]) for r in runs) == [8, 16, 24]
    assert {r.info.status for r in runs} == {"FINISHED"}
