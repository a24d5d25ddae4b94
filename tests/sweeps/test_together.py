"""hydra/launcher=together: seeds trained at once in single-threaded workers that keep their
process, each still a complete MLflow run; train.backend=auto."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_exp import choices
from mnist_exp.choices import Backend
from mnist_exp.config import validate
from mnist_exp.sweeps.together import plan, workers_for
from tests.helpers import (
    artifact_text,
    assert_clean_error,
    cli_env,
    compose_config,
    hydra_dirs,
    parent_and_children,
)

# Five seeds of a small run: two epochs, so that "each epoch once" has something to check.
SMALL = ["data.limit_train=2000", "data.limit_test=500", "train.epochs=2"]
FIGURES = {"accuracy_curve.png", "loss_curve.png", "misclassified.png", "samples.png",
           "confusion_matrix.png"}  # fmt: skip


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def steps(client, run_id: str, metric: str = "val_accuracy") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


@pytest.mark.slow
def test_five_seeds_together_are_five_complete_runs_equal_to_each_seed_alone(run_cli, store):
    import mlflow
    import mlflow.keras

    done = run_cli("-m", "hydra/launcher=together", "seed=1,2,3,4,5", *SMALL, *store.overrides)
    assert done.returncode == 0, done.stdout
    cores = os.cpu_count()
    workers = workers_for(5, cores)
    shared = f" sharing {cores} cores" if workers > cores else ""
    assert (f"5 job(s) on {workers} worker(s){shared}, 1 thread(s) each, Keras on jax (loaded "
            "once for them all)" in done.stdout)  # fmt: skip
    # Counted as they end, whichever worker ran them: 1 to 5, once each, the last one "done".
    counted = re.findall(r"\[(\d)/5\] dense-h128 .*seed=\d: val 0\.\d+ in \d+ s; (.*)", done.stdout)
    assert [int(n) for n, _ in counted] == [1, 2, 3, 4, 5]
    assert counted[-1][1] == "done"
    assert "Traceback" not in done.stdout and "][ERROR]" not in done.stdout
    assert "Warning" not in done.stdout  # e.g. Starlette's, from the store MLflow serves here
    alone = run_cli("seed=3", *SMALL, *store.overrides)
    assert alone.returncode == 0, alone.stdout

    client = store.client()
    runs = store.runs()
    parent, members = parent_and_children([r for r in runs if r.data.params.get("seed") != "3"
                                           or "mlflow.parentRunId" in r.data.tags])  # fmt: skip
    assert parent.info.status == "FINISHED"
    assert sorted(int(m.data.params["seed"]) for m in members) == [1, 2, 3, 4, 5]
    for member in members:
        assert member.info.status == "FINISHED"
        assert member.data.params["train.backend"] == "jax"
        assert {"test_accuracy", "fit_seconds"} <= set(member.data.metrics)
        assert steps(client, member.info.run_id) == [0, 1]
        names = {a.path for a in client.list_artifacts(member.info.run_id)}
        assert FIGURES | {"config.yaml", "model_summary.txt", "run.log"} <= names
        assert "JAX threads: 1" in artifact_text(client, member, "run.log")
        assert 0 < member.data.metrics["logging_cpu_seconds"] < 30
    # The same first training images in every member: samples.png drawn once, in the forkserver.
    samples = {Path(client.download_artifacts(m.info.run_id, "samples.png")).read_bytes()
               for m in members}  # fmt: skip
    assert len(samples) == 1
    # Two at a time, for real.
    spans = sorted((m.info.start_time, m.info.end_time) for m in members)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))

    (single,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags
                 and r.data.params.get("seed") == "3"]  # fmt: skip
    (member,) = [m for m in members if m.data.params["seed"] == "3"]
    mlflow.set_tracking_uri(store.uri)

    def weights(run) -> list[np.ndarray]:
        return mlflow.keras.load_model(f"runs:/{run.info.run_id}/model").get_weights()

    # The same math: one thread against all cores, a worker's later job against a fresh process.
    for a, b in zip(weights(member), weights(single), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    digits = mlflow.pyfunc.load_model(f"runs:/{member.info.run_id}/model").predict(
        np.zeros((2, 28, 28, 1), dtype=np.float32)
    )
    assert np.asarray(digits).shape == (2, 10)


@pytest.mark.slow
def test_jobs_on_another_backend_run_after_the_others_with_a_line_saying_why(run_cli, store):
    # auto: JAX for the dense network, TensorFlow for the CNN; one process runs one backend.
    tiny = ["data.limit_train=600", "data.limit_test=100", "train.epochs=1"]
    done = run_cli("-m", "hydra/launcher=together", "model=dense,cnn", *tiny, *store.overrides)
    assert done.returncode == 0, done.stdout
    assert "1 job(s) on tensorflow run after the jax ones: a process runs Keras on one backend" \
        in done.stdout  # fmt: skip
    _, children = parent_and_children(store.runs())
    assert sorted(
        (c.data.params["model.family"], c.data.params["train.backend"], c.info.status)
        for c in children
    ) == [  # fmt: skip
        ("cnn", "tensorflow", "FINISHED"),
        ("dense", "jax", "FINISHED"),
    ]


@pytest.mark.slow
def test_no_workers_is_one_line_and_records_nothing(run_cli, store):
    done = run_cli("-m", "hydra/launcher=together", "hydra.launcher.workers=0", "seed=1,2",
                   "train.epochs=1", *store.overrides)  # fmt: skip
    assert_clean_error(done, "hydra.launcher.workers=0: must be >= 1")
    assert "Training" not in done.stdout
    assert [r for r in store.runs() if "seed" in r.data.params] == []


def test_a_job_asking_for_more_threads_than_a_worker_has_runs_alone(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    jobs = [(i, compose_config(f"seed={i}", *extra, hydra=True))
            for i, extra in enumerate([[], [], ["train.threads=2"]])]  # fmt: skip
    groups = plan(jobs, workers=2, cores=2)
    assert [(g.workers, g.threads, [i for i, _ in g.jobs]) for g in groups] == [
        (2, 1, [0, 1]), (1, 2, [2])]  # fmt: skip
    # One job left: a worker of its own with every core.
    (group,) = plan(jobs[:1], workers=2, cores=2)
    assert (group.workers, group.threads) == (1, None)


def test_workers_fill_the_cores_to_the_end_of_a_sweep(monkeypatch):
    # Alike jobs on 2 cores: one worker per core leaves a core idle beside the last of an odd
    # count, so three share them (2.5 jobs' time for five, not 3); never more than two per core.
    assert [workers_for(jobs, 2) for jobs in (1, 2, 3, 4, 5, 6, 15)] == [1, 2, 3, 2, 3, 2, 3]
    assert {workers_for(jobs, 1) for jobs in range(1, 9)} == {1}
    assert max(workers_for(jobs, 4) for jobs in range(1, 40)) == 8
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    jobs = [(i, compose_config(f"seed={i}", hydra=True)) for i in range(5)]
    (group,) = plan(jobs, workers=None, cores=2)
    assert (group.workers, group.threads) == (3, 1)
    (group,) = plan(jobs, workers=2, cores=2)  # hydra.launcher.workers=2
    assert (group.workers, group.threads) == (2, 1)


def test_auto_picks_the_fastest_backend_that_is_installed(monkeypatch):
    monkeypatch.delitem(sys.modules, "keras")  # as in a fresh process, before Keras loads
    for installed, dense, cnn in [(True, "jax", "tensorflow"), (False, "tensorflow", "tensorflow")]:
        monkeypatch.setattr(choices, "jax_installed", lambda installed=installed: installed)
        for family, expected in [("dense", dense), ("cnn", cnn)]:
            cfg = compose_config(f"model={family}")
            assert cfg.train.backend is Backend.auto
            assert validate(cfg).train.backend.value == expected
            # Resolved in the composed config too: the run's params and hash carry it.
            assert cfg.train.backend.value == expected
    monkeypatch.undo()
    # A process that already runs Keras (this one: TensorFlow) keeps it.
    assert validate(compose_config()).train.backend is Backend.tensorflow


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["group", "launcher"])
def test_kill_9_in_the_middle_of_a_group_then_the_same_command_finishes_every_member(
    store, tmp_path, mnist_dir, killed
):
    command = [sys.executable, "-m", "mnist_exp.run", "-m", "hydra/launcher=together",
               "seed=1,2,3", "data.limit_train=10000", "data.limit_test=300", "train.epochs=3",
               *store.overrides, *hydra_dirs(tmp_path)]  # fmt: skip
    store.create()
    first = subprocess.Popen(command, cwd=tmp_path, env=cli_env(mnist_dir), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    try:
        # Once two members have checkpointed an epoch: the launcher and its workers at once.
        while time.monotonic() < deadline and first.poll() is None:
            if (
                store.checkpoints.exists()
                and sum(
                    (d / "training_metadata.json").exists() for d in store.checkpoints.iterdir()
                )
                >= 2
            ):
                # The launcher and its workers at once, or the launcher alone: its workers
                # (forks of a forkserver, not its children) see it gone and stop.
                if killed == "group":
                    os.killpg(first.pid, signal.SIGKILL)
                else:
                    os.kill(first.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        first.communicate(timeout=60)
        left = time.monotonic() + 20
        while time.monotonic() < left and group_alive(first.pid):
            time.sleep(0.2)
        assert not group_alive(first.pid), "a worker or the forkserver outlived its launcher"
    finally:
        if group_alive(first.pid):
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == -9

    again = subprocess.run(command, cwd=tmp_path, env=cli_env(mnist_dir), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert again.returncode == 0, again.stdout
    assert "Resuming run" in again.stdout
    client = store.client()
    members = [r for r in store.runs() if "mlflow.parentRunId" in r.data.tags]
    finished = [m for m in members if m.info.status == "FINISHED"]
    assert sorted(int(m.data.params["seed"]) for m in finished) == [1, 2, 3]
    assert not [m for m in members if m.info.status == "RUNNING"]
    for member in finished:  # every epoch once: no gap, no duplicate
        assert steps(client, member.info.run_id) == [0, 1, 2]
