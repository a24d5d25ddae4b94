"""Where runs are recorded: a fresh SQLite store opened by many processes at once, and the
store and path mistakes a user makes, each refused with one line that names it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnist_exp.tracking.store import TrackingUnavailable
from mnist_exp.tracking.store_checks import check_uri
from tests.helpers import TINY, assert_clean_error, cli_env, hydra_dirs


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


def read_only_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    path.chmod(0o555)
    return path


needs_permissions = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere"
)


@pytest.mark.slow
@needs_permissions
def test_an_unwritable_store_directory_is_named_before_anything_trains(run_cli, tmp_path):
    ro = read_only_dir(tmp_path / "ro")
    done = run_cli(f"tracking.uri=sqlite:///{ro}/mlruns/mlflow.db", *TINY)
    assert_clean_error(done, f"tracking.uri=sqlite:///{ro}/mlruns/mlflow.db: cannot write to "
                       f"{ro}/mlruns (Permission denied)", "directory you can write")  # fmt: skip
    assert "MNIST loaded" not in done.stdout
    assert list(ro.iterdir()) == []


@pytest.mark.slow
def test_an_impossible_store_directory_is_named(run_cli, tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    uri = f"sqlite:///{tmp_path}/a_file/mlruns/mlflow.db"
    done = run_cli(f"tracking.uri={uri}", *TINY)
    assert_clean_error(done, f"tracking.uri={uri}: cannot write to", "Not a directory")
    assert "MNIST loaded" not in done.stdout


@pytest.mark.slow
@needs_permissions
def test_an_unwritable_artifact_directory_is_named_before_anything_trains(run_cli, store, tmp_path):
    ro = read_only_dir(tmp_path / "ro")
    done = run_cli(f"tracking.uri={store.uri}", f"tracking.artifact_location={ro}/artifacts", *TINY)
    assert_clean_error(done, f"tracking.artifact_location={ro}/artifacts: cannot write to")
    assert "MNIST loaded" not in done.stdout
    assert store.runs() == []


@pytest.mark.slow
def test_a_corrupt_store_is_named_with_the_fix_and_left_as_it_was(run_cli, run_tool, store):
    store.root.mkdir(parents=True)
    garbage = bytes(range(256)) * 16
    db = store.root / "mlflow.db"
    db.write_bytes(garbage)
    done = run_cli(*store.overrides, *TINY)
    assert_clean_error(done, f"{db} is not a usable MLflow database (file is not a database)",
                       f"mv {db} {db}.bad")  # fmt: skip
    assert "MNIST loaded" not in done.stdout
    compared = run_tool("compare", store=store)
    assert compared.returncode != 0 and "Traceback" not in compared.stderr
    assert f"{db} is not a usable MLflow database" in compared.stderr
    assert db.read_bytes() == garbage


@pytest.mark.slow
@pytest.mark.parametrize(
    ("uri", "needles"),
    [("ftp://example.org/mlruns", ["unsupported scheme 'ftp'", "sqlite:///"]),
     ("/tmp/mlruns", ["MLflow 3 keeps runs in a database, not a directory", "sqlite:///"]),
     ("sqlite:///mlruns/mlflow.db", ["the path must be absolute", "four slashes"]),
     ("mysql://me:s3cret@127.0.0.1/mlflow",
      ["tracking.uri=mysql://me:***@127.0.0.1/mlflow needs the database driver 'mysqldb'",
       "not installed", "Install the driver: pip install mysqlclient"])],
    ids=["scheme", "directory", "relative", "driver"],
)  # fmt: skip
def test_a_uri_mlflow_cannot_use_is_named_with_the_fix(run_cli, tmp_path, uri, needles):
    done = run_cli(f"tracking.uri={uri}", *TINY)
    assert_clean_error(done, *needles)
    # Hydra repeats the command line; what we print never shows a password.
    assert not [
        line
        for line in done.stdout.splitlines()
        if "s3cret" in line and "tracking.uri=" in line and "Error executing job" not in line
    ]
    assert "MNIST loaded" not in done.stdout


def test_postgres_needs_its_driver_or_says_how_to_install_it():
    """Passes with or without psycopg installed: either the URI is accepted, or the error
    names the extra that installs it."""
    uri = "postgresql://me:s3cret@127.0.0.1/mlflow"
    if importlib.util.find_spec("psycopg") is not None:
        check_uri(uri)
        return
    with pytest.raises(TrackingUnavailable) as refused:
        check_uri(uri)
    assert "needs the database driver 'psycopg'" in str(refused.value)
    assert "pip install 'mnist-exp[postgres]'" in str(refused.value)
    assert "s3cret" not in str(refused.value)


@pytest.mark.slow
@needs_permissions
def test_an_unwritable_data_cache_fails_at_once_naming_it(run_cli, store, tmp_path):
    ro = read_only_dir(tmp_path / "ro")
    started = time.monotonic()
    done = run_cli(*store.overrides, f"data.cache_dir={ro}", *TINY)
    assert_clean_error(done, f"data.cache_dir={ro}: MNIST is not cached there and nothing can "
                       "be written there (permission denied)", "MNIST_EXP_DATA_DIR")  # fmt: skip
    assert "Downloading" not in done.stdout and "MNIST source" not in done.stdout
    assert time.monotonic() - started < 60
    assert store.runs() == []


def test_a_server_patience_that_is_not_seconds_is_named(run_cli):
    done = run_cli("tracking.uri=http://127.0.0.1:9", *TINY,
                   env={"MNIST_EXP_SERVER_PATIENCE": "2min"})  # fmt: skip
    assert_clean_error(done, "MNIST_EXP_SERVER_PATIENCE='2min': expected a whole number of seconds")
    assert "MNIST loaded" not in done.stdout
