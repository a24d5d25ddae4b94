"""Chaos: a small sweep killed outright at random moments and run again after each, and a sweep
whose tracking server is killed and restarted at random moments. Whatever the moments, the end
is the same: one FINISHED run per config, every epoch's metrics logged once (no gap, no
duplicate step), nothing left RUNNING, and compare listing every job.

The moments come from a fixed seed (CHAOS_SEED to try others) and are printed, so a failure
reproduces.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from mnist_exp.server import tracking_server
from mnist_exp.tracking.loopback import free_port
from tests.helpers import Store, cli_env, hydra_dirs, run_module, runs_in

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("CHAOS_SEED", "24"))
WIDTHS = ["8", "16", "32"]
EPOCHS = 3
SWEEP = ["-m", f"model.hidden={','.join(WIDTHS)}", "data.limit_train=500",
         "data.limit_test=200", f"train.epochs={EPOCHS}"]  # fmt: skip
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    # A session of its own: kill -9 reaches the sweep and every process it started.
    return subprocess.Popen([sys.executable, "-m", "mnist_exp.run", *args], cwd=cwd, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def assert_every_job_once(client: MlflowClient, tmp_path: Path, env: dict[str, str], uri: str):
    runs = runs_in(client)
    jobs = [r for r in runs if "model.hidden" in r.data.params]
    statuses = sorted((r.data.params["model.hidden"], r.info.status) for r in jobs)
    print("runs:", statuses, "parents:", [r.info.status for r in runs if r not in jobs])
    assert "RUNNING" not in {r.info.status for r in runs}, statuses
    finished = [r for r in jobs if r.info.status == "FINISHED"]
    assert sorted(r.data.params["model.hidden"] for r in finished) == sorted(WIDTHS), statuses
    for run in finished:
        for metric in METRICS:
            logged = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
            assert logged == list(range(EPOCHS)), (run.info.run_name, metric, logged)
        assert "test_accuracy" in run.data.metrics
    compared = run_module("mnist_exp.compare", "--tracking-uri", uri, "--out",
                          str(tmp_path / "compare"), cwd=tmp_path, env=env,
                          merge=False)  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    for width in WIDTHS:
        assert f"dense-h{width} " in compared.stdout, compared.stdout


def epochs_logged(database: Path) -> int:
    """Epochs logged so far across the sweep's jobs (and tries), read straight from the SQLite
    file while the sweep writes it."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM metrics WHERE key = 'loss'").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet, or busy for a moment


def wait_for_epochs(proc: subprocess.Popen, database: Path, epochs: int, delay: float) -> bool:
    """Wait until `epochs` epochs are logged, then `delay` seconds more; False if the command
    ended first."""
    deadline = time.monotonic() + 300
    while epochs_logged(database) < epochs:
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        return True


def moments(rng: random.Random, kills: int) -> list[tuple[int, float]]:
    """Where the kills land: after how many of the sweep's epochs, plus how many seconds. By
    progress, not by the clock, so that they land in the jobs however loaded the machine is;
    the delay puts them anywhere in an epoch, a checkpoint's write, the logging of a finished
    job, the start of the next (0 epochs: while the sweep starts)."""
    targets = sorted(rng.sample(range(len(WIDTHS) * EPOCHS), kills))
    return [(target, round(rng.uniform(0, 2.5), 2)) for target in targets]


def test_a_sweep_killed_at_random_moments_ends_with_every_job_once(
    store: Store, tmp_path: Path, mnist_dir: Path
):
    rng = random.Random(SEED)
    kills = moments(rng, 4)
    print(f"CHAOS_SEED={SEED}: kill -9 after (epochs logged, + seconds) {kills}")
    store.create()
    args = [*SWEEP, *store.overrides, *hydra_dirs(tmp_path)]
    env = cli_env(mnist_dir)
    database = store.root / "mlflow.db"
    started = time.monotonic()
    for epochs, delay in kills:
        proc = start(args, tmp_path, env)
        if not wait_for_epochs(proc, database, epochs, delay):
            print(f"  the sweep ended before {epochs} epochs + {delay} s")
            proc.communicate(timeout=60)
            break
        kill_group(proc)
        counts = {}
        for run in store.runs():
            counts[run.info.status] = counts.get(run.info.status, 0) + 1
        print(f"  killed at {time.monotonic() - started:.0f}s, {epochs_logged(database)} "
              f"epochs logged: {counts}")  # fmt: skip
    last = start(args, tmp_path, env)
    output, _ = last.communicate(timeout=300)
    print(f"all tries: {time.monotonic() - started:.0f}s")
    assert last.returncode == 0, output
    assert "Traceback" not in output, output
    assert_every_job_once(store.client(), tmp_path, env, store.uri)


def server_group(port: int) -> int:
    """The process group of the `mlflow server` on `port` (tracking_server starts it as a
    session leader)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "mlflow" in cmdline and "server" in cmdline and str(port) in cmdline:
            return os.getpgid(proc.pid)
    raise AssertionError(f"no mlflow server on port {port}")


def test_a_parallel_sweep_whose_server_is_killed_at_random_moments_loses_nothing(
    store: Store, tmp_path: Path, mnist_dir: Path
):
    rng = random.Random(SEED)
    kills = moments(rng, 2)
    downtimes = [round(rng.uniform(0, 5), 1) for _ in kills]
    print(f"CHAOS_SEED={SEED}: server killed -9 after (epochs logged, + seconds) {kills}, down "
          f"for {downtimes} s + its restart")  # fmt: skip
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = cli_env(mnist_dir, {"MLFLOW_TRACKING_URI": uri})
    args = [*SWEEP, "hydra/launcher=parallel", "tracking=server", *hydra_dirs(tmp_path)]
    started = time.monotonic()
    server = tracking_server(store.root, port)
    server.__enter__()
    proc = start(args, tmp_path, env)
    try:
        for (epochs, delay), down in zip(kills, downtimes, strict=True):
            if not wait_for_epochs(proc, store.root / "mlflow.db", epochs, delay):
                break  # the sweep ended before this kill
            os.killpg(server_group(port), signal.SIGKILL)
            server.__exit__(None, None, None)
            killed = time.monotonic()
            time.sleep(down)
            server = tracking_server(store.root, port)
            server.__enter__()
            print(
                f"  killed at {killed - started:.0f}s, back after {time.monotonic() - killed:.0f}s"
            )
        output, _ = proc.communicate(timeout=400)
        print(f"sweep: exit {proc.returncode} after {time.monotonic() - started:.0f}s")
        if proc.returncode != 0:  # the server was away too long: the same command again
            again = start(args, tmp_path, env)
            output, _ = again.communicate(timeout=400)
            assert again.returncode == 0, output
        assert "Traceback" not in output, output
        assert_every_job_once(MlflowClient(uri), tmp_path, env, uri)
    finally:
        if proc.poll() is None:
            kill_group(proc)
        server.__exit__(None, None, None)
