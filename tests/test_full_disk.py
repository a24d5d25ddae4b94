"""A full disk mid-run, wherever it is: one line naming the path, never a traceback; the run
ended FAILED where the store can still take it; once space is freed, the same command finishes
every job, and a job whose training had finished does not train again.

A real full disk: a 64 MB tmpfs (mounted when the tests run as root, skipped otherwise), filled
up with a filler file while the run trains, and freed by deleting it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Store, checkpointed_epochs, cli_env, parent_and_children, run_module

pytestmark = pytest.mark.slow

# Epochs of a second or two on 2 shared cores, as tests/test_resume.py's.
EPOCHS_OF_SECONDS = ["data.limit_train=10000", "data.limit_test=300", "train=literal"]


@pytest.fixture
def small_disk(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk is made as a small tmpfs, and mounting one needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk is full; the filler."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(1 << 20))
    except OSError as err:
        assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def start(args: list[str], cwd: Path, mnist_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnist_exp.run", *args], cwd=cwd,
                            env=cli_env(mnist_dir), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip


def fill_once_training(proc: subprocess.Popen, checkpoints: Path, disk: Path) -> tuple[Path, str]:
    """Fill `disk` as soon as a run has checkpointed its first epoch; the filler, and what the
    command printed."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoints.exists() and any(checkpointed_epochs(d) for d in checkpoints.iterdir()):
            break
        time.sleep(0.05)
    filler = fill(disk)
    output, _ = proc.communicate(timeout=300)
    return filler, output


def the_line(output: str) -> str:
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if "cannot be written" in line]
    print(line)
    return line


def steps(client, run_id: str, metric: str = "loss") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


def test_a_sweep_whose_disk_fills_stops_in_one_line_and_finishes_once_freed(
    small_disk: Path, tmp_path: Path, mnist_dir: Path
):
    """Store, artifacts, checkpoints and Hydra's outputs all on the disk that fills."""
    store = Store(small_disk / "mlruns")
    sweep = ["-m", "model.hidden=8,16", *EPOCHS_OF_SECONDS, "train.epochs=3", *store.overrides,
             f"hydra.sweep.dir={small_disk}/multirun"]  # fmt: skip
    started = time.monotonic()
    proc = start(sweep, tmp_path, mnist_dir)
    filler, output = fill_once_training(proc, store.checkpoints, small_disk)
    print(f"stopped {time.monotonic() - started:.0f}s after it started")
    assert proc.returncode == 1, output
    line = the_line(output)
    assert line.startswith(str(small_disk)) and "cannot be written" in line
    assert f"({small_disk} has 0.0 MB free)" in line and "Free some space there" in line
    assert "#1 : model.hidden=16" not in output  # the sweep stopped at the full disk

    filler.unlink()
    again = run_module("mnist_exp.run", *sweep, cwd=tmp_path, env=cli_env(mnist_dir))
    assert again.returncode == 0, again.stdout
    assert "2 finished, 0 failed, 0 killed, 0 skipped" in again.stdout
    parent, children = parent_and_children(store.runs())
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    assert [steps(store.client(), c.info.run_id) for c in children] == [[0, 1, 2]] * 2


def test_full_artifacts_end_the_run_failed_and_a_rerun_does_not_train_again(
    small_disk: Path, store: Store, tmp_path: Path, mnist_dir: Path
):
    """The store and checkpoints elsewhere: the run's training is done and kept when its
    figures and model do not fit; the re-run logs them without training."""
    args = [*EPOCHS_OF_SECONDS, "train.epochs=2", f"tracking.uri={store.uri}",
            f"tracking.artifact_location={small_disk}/artifacts",
            f"tracking.checkpoint_dir={store.checkpoints}",
            f"hydra.run.dir={tmp_path}/out"]  # fmt: skip
    store.create()
    proc = start(args, tmp_path, mnist_dir)
    filler, output = fill_once_training(proc, store.checkpoints, small_disk)
    assert proc.returncode == 1, output
    line = the_line(output)
    assert line.startswith(f"tracking.artifact_location={small_disk}/artifacts: cannot be"), line
    (run,) = store.runs()
    assert run.info.status == "FAILED"  # the store could take that

    filler.unlink()
    again = run_module("mnist_exp.run", *args, cwd=tmp_path, env=cli_env(mnist_dir))
    assert again.returncode == 0, again.stdout
    assert f"Resuming run {run.info.run_id} (FAILED) from its checkpoint after epoch 2" in (
        again.stdout
    )
    assert "Epoch 1/2" not in again.stdout and "Epoch 2/2" not in again.stdout  # not trained
    (run,) = store.runs()
    assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
    assert steps(store.client(), run.info.run_id) == [0, 1]


def test_a_full_hydra_output_dir_is_one_line_before_anything_is_recorded(
    small_disk: Path, store: Store, tmp_path: Path, mnist_dir: Path
):
    fill(small_disk)
    args = ["data.limit_train=1000", "train.epochs=1", *store.overrides,
            f"hydra.run.dir={small_disk}/outputs"]  # fmt: skip
    started = time.monotonic()
    done = run_module("mnist_exp.run", *args, cwd=tmp_path, env=cli_env(mnist_dir))
    print(f"{time.monotonic() - started:.1f}s")
    assert done.returncode == 1
    line = the_line(done.stdout)
    assert line.startswith(f"hydra.run.dir={small_disk}/outputs: cannot be written, no space")
    assert store.runs() == []
