"""Nothing stuck, nothing lost: a run or sweep killed outright (`kill -9`) is ended FAILED by
whoever opens the experiment next, resumes from its last checkpointed epoch into the same MLflow
run, and a re-run sweep covers every job, those it skipped as already finished included."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from mnist_exp.choices import LRSchedule
from mnist_exp.config import DenseConfig, TrainConfig
from mnist_exp.names import IN_SWEEP_TAG, PARENT_TAG, RESTARTED_TAG, RESUMED_TAG
from mnist_exp.tracking import orphans
from mnist_exp.training import data, train
from mnist_exp.training.checkpoint import (
    Checkpoint,
    CheckpointKeeper,
    CheckpointUnreadable,
    write_atomically,
)
from mnist_exp.training.models import build_model
from tests.helpers import (
    TINY,
    Store,
    artifact_text,
    assert_clean_error,
    checkpointed_epochs,
    cli_env,
    hydra_dirs,
    parent_and_children,
    run_module,
)

# Epochs of a second or two on 2 shared cores: long enough that a kill sent when an epoch's
# checkpoint appears lands before the next one is saved, short enough for a test.
EPOCHS_OF_SECONDS = ["data.limit_train=10000", "data.limit_test=300", "train=literal"]


def start_run(store: Store, tmp_path: Path, mnist_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_exp.run", *args, *store.overrides, *hydra_dirs(tmp_path)],
        cwd=tmp_path, env=cli_env(mnist_dir), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def kill_9_once(proc: subprocess.Popen, checkpoint_of, epochs: int, timeout: float = 300) -> None:
    """SIGKILL `proc` (what the OOM killer sends) as soon as the checkpoint directory that
    `checkpoint_of()` names holds `epochs` epochs."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            directory = checkpoint_of()
            if directory is not None and checkpointed_epochs(directory) >= epochs:
                proc.kill()
                break
            time.sleep(0.05)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -9, output


def killed_run(store: Store, tmp_path: Path, mnist_dir: Path, args: list[str], epochs: int) -> str:
    """A fresh store's one run of `args`, killed with kill -9 once `epochs` epochs are
    checkpointed: its id."""
    store.create()
    kill_9_once(start_run(store, tmp_path, mnist_dir, *args), lambda: the_run_dir(store), epochs)
    (killed,) = store.runs()
    return killed.info.run_id


def the_run_dir(store: Store):
    """The checkpoint directory of the store's only run, once it has one."""
    found = list(store.checkpoints.glob("*")) if store.checkpoints.exists() else []
    return found[0] if len(found) == 1 else None


def steps(client, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


def values(client, run_id: str, metric: str) -> list[float]:
    history = client.get_metric_history(run_id, metric)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def dead_pid() -> int:
    """The pid of a process that has just exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_only_runs_whose_process_is_gone_on_this_host_are_ended(store: Store):
    store.create()
    client = store.client()
    experiment = client.create_experiment("mnist")
    here = socket.gethostname()
    me = orphans.this_process()
    runs = {
        "killed": {"host": here, "pid": str(dead_pid())},
        "alive": me,
        # This process's pid, started at another time: the OS gave a dead run's pid to us.
        "pid reused": {**me, orphans.PROCESS_TAG: me[orphans.PROCESS_TAG] + "0"},
        "other host": {"host": here + "-elsewhere", "pid": str(dead_pid())},
        "no process recorded": {},
    }
    ids = {name: client.create_run(experiment, tags=tags, run_name=name).info.run_id
           for name, tags in runs.items()}  # fmt: skip

    ended = orphans.end_orphaned_runs(client, [experiment])

    assert sorted(ended) == sorted([ids["killed"], ids["pid reused"]])
    status = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert status == {"killed": "FAILED", "alive": "RUNNING", "pid reused": "FAILED",
                      "other host": "RUNNING", "no process recorded": "RUNNING"}  # fmt: skip
    killed = client.get_run(ids["killed"]).data.tags
    assert f"its process {runs['killed']['pid']} on {here} no longer exists" in killed["orphaned"]
    assert killed["mlflow.note.content"] == killed["orphaned"]  # the run's description
    assert orphans.end_orphaned_runs(client, [experiment]) == []  # nothing twice


class CrashAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"crash at the start of epoch {epoch + 1}")


def compiled(cfg: TrainConfig) -> keras.Model:
    train.set_seed(42)
    model = build_model(DenseConfig(hidden=16))
    train.compile_model(model, cfg, 1000)
    return model


@pytest.mark.slow
def test_a_fit_that_crashed_continues_from_its_checkpoint(mnist, tmp_path: Path):
    small = data.prepare(mnist, limit_train=1200, limit_test=100)
    cfg = TrainConfig(epochs=4, lr_schedule=LRSchedule.cosine)
    saved = Checkpoint(tmp_path / "run")
    with pytest.raises(RuntimeError, match="epoch 3"):
        train.fit(compiled(cfg), small, cfg, [CrashAtEpoch(2)], saved)
    assert saved.exists() and saved.completed_epochs() == 2

    seen = []
    epochs = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    model = compiled(cfg)
    fitted = train.fit(model, small, cfg, [epochs], saved)
    assert seen == [2, 3] and fitted.resumed_from == 2
    # Adam's state came back too: its step count covers all four epochs.
    steps_per_epoch = int(np.ceil(len(small.x_train) * (1 - cfg.validation_split) / cfg.batch_size))
    assert int(model.optimizer.iterations.numpy()) == 4 * steps_per_epoch
    assert len(fitted.history["loss"]) == 4 and len(fitted.history["val_accuracy"]) == 4
    cosine = [0.001 * (1 + np.cos(np.pi * epoch / 4)) / 2 for epoch in range(4)]
    assert fitted.history["learning_rate"] == pytest.approx(cosine)
    assert saved.is_fitted()

    # fit() had returned: a crash after it (evaluating, logging) trains nothing again.
    again = compiled(cfg)
    refitted = train.fit(again, small, cfg, [epochs], saved)
    assert seen == [2, 3] and refitted.history == fitted.history
    for ours, theirs in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    saved.remove()
    assert not saved.exists()


def test_early_stopping_resumes_with_the_best_epoch_and_patience_it_had(tmp_path: Path):
    """After resuming at epoch 3 of val_accuracy 0.90, 0.95, 0.94 with patience 2, one more
    epoch without improvement stops training, as it would have without the interruption."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    saved = Checkpoint(tmp_path)
    saved.save_epoch(model, {"loss": [1.0, 0.9, 0.8], "val_accuracy": [0.90, 0.95, 0.94]}, None)
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=2, restore_best_weights=False
    )
    stopper.set_model(model)
    keeper = CheckpointKeeper(saved, stopper, resumed_from=saved.restore(model))
    stopper.on_train_begin()
    keeper.on_train_begin()
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (0.95, 1, 1)
    assert keeper.history == {"loss": [1.0, 0.9, 0.8], "val_accuracy": [0.90, 0.95, 0.94]}
    stopper.on_epoch_end(3, {"val_accuracy": 0.93})
    assert model.stop_training


@pytest.mark.slow
def test_a_killed_run_resumes_into_the_same_run(store: Store, tmp_path: Path, mnist_dir: Path):
    store.create()  # read while the run writes it
    args = [*EPOCHS_OF_SECONDS, "train.epochs=4", "train.lr_schedule=cosine",
            "train.early_stopping_patience=3"]  # fmt: skip
    kill_9_once(start_run(store, tmp_path, mnist_dir, *args), lambda: the_run_dir(store), 2)
    (killed,) = store.runs()
    assert killed.info.status == "RUNNING"  # what kill -9 leaves behind
    dry = run_module("mnist_exp.run", *args, *store.overrides, *hydra_dirs(tmp_path),
                     "dry_run=true", cwd=tmp_path, env=cli_env(mnist_dir))  # fmt: skip
    assert dry.returncode == 0, dry.stdout
    assert f"resume run {killed.info.run_id} after epoch 2" in dry.stdout
    assert [r.info.status for r in store.runs()] == ["RUNNING"]  # the dry run changed nothing

    again = run_module("mnist_exp.run", *args, *store.overrides, *hydra_dirs(tmp_path),
                       cwd=tmp_path, env=cli_env(mnist_dir))  # fmt: skip
    assert again.returncode == 0, again.stdout
    run_id = killed.info.run_id
    assert f"Resuming run {run_id} (FAILED) from its checkpoint after epoch 2" in again.stdout
    assert "Epoch 3/4" in again.stdout and "Epoch 2/4" not in again.stdout  # 2 epochs trained

    (run,) = store.runs()
    client = store.client()
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    for metric in ("loss", "val_accuracy", "learning_rate", "epoch_seconds"):
        assert steps(client, run_id, metric) == [0, 1, 2, 3], metric
    # The cosine schedule goes on from where it was, over the 4 epochs.
    cosine = [0.001 * (1 + np.cos(np.pi * epoch / 4)) / 2 for epoch in range(4)]
    assert values(client, run_id, "learning_rate") == pytest.approx(cosine)
    assert 0.8 < run.data.metrics["test_accuracy"] <= 1
    (model,) = client.get_run(run_id).outputs.model_outputs
    assert client.get_logged_model(model.model_id).name == "model"
    assert "no longer exists" in run.data.tags["orphaned"]
    assert run.data.tags[RESUMED_TAG].startswith("Resumed after epoch 2 (it had ended FAILED)")
    assert not store.checkpoints.exists() or not any(store.checkpoints.iterdir())


@pytest.mark.slow
def test_rerun_true_starts_again_rather_than_resume(store: Store, tmp_path: Path, mnist_dir):
    store.create()
    args = [*EPOCHS_OF_SECONDS, "train.epochs=2"]
    kill_9_once(start_run(store, tmp_path, mnist_dir, *args), lambda: the_run_dir(store), 1)
    (killed,) = store.runs()

    again = run_module("mnist_exp.run", *args, "tracking.rerun=true", *store.overrides,
                       *hydra_dirs(tmp_path), cwd=tmp_path, env=cli_env(mnist_dir))  # fmt: skip
    assert again.returncode == 0, again.stdout
    assert "not resuming run" in again.stdout
    statuses = {r.info.run_id: r.info.status for r in store.runs()}
    assert len(statuses) == 2 and statuses[killed.info.run_id] == "FAILED"
    (fresh,) = [r for r in store.runs() if r.info.run_id != killed.info.run_id]
    assert fresh.info.status == "FINISHED"
    assert steps(store.client(), fresh.info.run_id, "loss") == [0, 1]
    assert not any(store.checkpoints.iterdir())  # the old run's checkpoint went too


@pytest.mark.slow
def test_a_killed_sweep_reruns_whole(store: Store, tmp_path: Path, mnist_dir: Path):
    store.create()
    # On TensorFlow, whose epochs take long enough here for the kill to land in job 2.
    sweep = ["-m", "model.hidden=8,16,32", *EPOCHS_OF_SECONDS, "train.epochs=2",
             "train.backend=tensorflow"]  # fmt: skip

    def second_jobs_checkpoint():
        children = sorted((r for r in store.runs() if PARENT_TAG in r.data.tags),
                          key=lambda r: r.info.start_time)  # fmt: skip
        # Job 1's figures and model are logged in the background while job 2 trains: kill once
        # that is done too, so that job 1 is FINISHED as this scenario needs.
        if len(children) > 1 and children[0].info.status == "FINISHED":
            return store.checkpoints / children[1].info.run_id
        return None

    kill_9_once(start_run(store, tmp_path, mnist_dir, *sweep), second_jobs_checkpoint, 1)
    old_parent, (first, second) = parent_and_children(store.runs())
    assert [old_parent.info.status, first.info.status, second.info.status] == [
        "RUNNING", "FINISHED", "RUNNING"]  # fmt: skip

    again = run_module("mnist_exp.run", *sweep, *store.overrides, *hydra_dirs(tmp_path),
                       cwd=tmp_path, env=cli_env(mnist_dir))  # fmt: skip
    assert again.returncode == 0, again.stdout
    assert "2 finished, 0 failed, 0 killed, 1 skipped" in again.stdout
    assert f"Resuming run {second.info.run_id} (FAILED)" in again.stdout

    compared = run_module("mnist_exp.compare", "--tracking-uri", store.uri, "--out",
                          str(tmp_path / "compare"), cwd=tmp_path, env=cli_env(mnist_dir),
                          merge=False)  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    runs = {r.info.run_id: r for r in store.runs()}
    # The same sweep again: its parent run continued (ended FAILED as an orphan first).
    (parent,) = [r for r in runs.values() if PARENT_TAG not in r.data.tags]
    assert parent.info.run_id == old_parent.info.run_id
    assert "(continued: the same sweep, last FAILED)" in again.stdout
    assert f"3 runs of sweep {parent.info.run_id}" in compared.stdout
    for hidden in ("dense-h8 ", "dense-h16 ", "dense-h32 "):
        assert hidden in compared.stdout
    assert len(runs) == 4  # one parent, three jobs: the killed one was resumed
    assert "RUNNING" not in {r.info.status for r in runs.values()}
    assert "no longer exists" in parent.data.tags["orphaned"]
    assert parent.info.status == "FINISHED"
    assert {r.data.tags.get(PARENT_TAG) for r in runs.values()} == {None, parent.info.run_id}
    assert steps(store.client(), second.info.run_id, "loss") == [0, 1]
    assert not any(k.startswith(IN_SWEEP_TAG) for k in runs[first.info.run_id].data.tags)
    summary = artifact_text(store.client(), parent, "sweep_summary.txt")
    assert f"SKIPPED  {first.info.run_id}" in summary
    assert f"FINISHED {second.info.run_id}" in summary
    assert summary.count("\n  FINISHED ") == 2  # the skipped one is listed SKIPPED


@pytest.mark.slow
def test_a_server_that_starts_ends_the_runs_of_killed_processes(tmp_path: Path):
    store = Store(tmp_path / "store")
    store.create()
    client = store.client()
    experiment = client.create_experiment("mnist")
    killed = client.create_run(experiment, tags={"host": socket.gethostname(),
                                                 "pid": str(dead_pid())})  # fmt: skip
    probe = (
        "import os; from mlflow import MlflowClient; "
        f"print('STATUS', MlflowClient().get_run('{killed.info.run_id}').info.status)"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mnist_exp.server", "--store", str(store.root), "--port", "0",
         "--", sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "STATUS FAILED" in done.stdout  # already when the command that uses it starts
    assert "no longer exists" in client.get_run(killed.info.run_id).data.tags["orphaned"]


@pytest.mark.slow
def test_a_checkpoint_dir_that_cannot_be_written_is_one_line_before_training(run_cli, store):
    elsewhere = [o for o in store.overrides if not o.startswith("tracking.checkpoint_dir=")]
    done = run_cli("tracking.checkpoint_dir=/proc/no-such-place", *TINY, *elsewhere)
    assert_clean_error(done, "tracking.checkpoint_dir=/proc/no-such-place: cannot write there",
                       "tracking.checkpoint_dir=null")  # fmt: skip
    assert "Training" not in done.stdout
    assert store.runs() == []


def test_run_tags_say_which_process_runs_it():
    tags = orphans.this_process()
    assert tags["host"] == socket.gethostname() and tags["pid"] == str(os.getpid())
    assert not orphans.process_is_gone(tags)


def damage(path: Path, how: str) -> bytes:
    """Cut `path` to half its size, or overwrite 64 bytes in its middle; what it then holds."""
    size = path.stat().st_size
    with open(path, "r+b") as file:
        if how == "truncated":
            file.truncate(size // 2)
        else:
            file.seek(size // 2)
            file.write(b"\xff" * 64)
    return path.read_bytes()


@pytest.mark.slow
def test_a_damaged_checkpoint_is_moved_aside_and_its_run_trains_again_from_epoch_0(
    store: Store, tmp_path: Path, mnist_dir: Path
):
    args = [*EPOCHS_OF_SECONDS, "train.epochs=3"]
    run_id = killed_run(store, tmp_path, mnist_dir, args, 2)
    client = store.client()
    first_try = steps(client, run_id, "loss")  # epoch 0, and 1 if it was logged before the kill
    (weights,) = (store.checkpoints / run_id).glob("*.weights.h5")
    damaged = damage(weights, "truncated")

    started = time.monotonic()
    again = run_module("mnist_exp.run", *args, *store.overrides, *hydra_dirs(tmp_path),
                       cwd=tmp_path, env=cli_env(mnist_dir))  # fmt: skip
    print(f"re-run took {time.monotonic() - started:.1f}s")
    assert again.returncode == 0, again.stdout
    assert "Traceback" not in again.stdout, again.stdout
    (line,) = [line for line in again.stdout.splitlines() if "cannot be read" in line]
    print(line)
    (aside,) = store.checkpoints.glob(f"{run_id}.corrupt-*")
    assert f"checkpoint {weights} cannot be read" in line and f"moved to {aside}" in line
    assert "starts again from epoch 0" in line
    assert (aside / weights.name).read_bytes() == damaged  # kept as it was, not deleted
    assert "Epoch 1/3" in again.stdout  # trained whole

    (run,) = store.runs()
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    note = run.data.tags[RESTARTED_TAG]
    assert f"moved to {aside}" in note and "started again from epoch 0" in note
    history = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == sorted([*first_try, 0, 1, 2])
    # Each step's latest value is the new try's: the run's loss is its last epoch's.
    newest = {m.step: m for m in sorted(history, key=lambda m: m.timestamp)}
    assert run.data.metrics["loss"] == newest[2].value
    assert not (store.checkpoints / run_id).exists()  # FINISHED: nothing left to resume

    dry = run_module("mnist_exp.run", *args, *store.overrides, *hydra_dirs(tmp_path),
                     "dry_run=true", cwd=tmp_path, env=cli_env(mnist_dir))  # fmt: skip
    assert dry.returncode == 0 and "Traceback" not in dry.stdout, dry.stdout


def test_a_manifest_that_is_not_json_or_names_a_missing_file_is_unreadable(tmp_path: Path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    saved = Checkpoint(tmp_path / "run")
    saved.save_epoch(model, {"loss": [0.5]}, None)
    saved.verify()
    assert sorted(p.name for p in saved.directory.iterdir()) == [
        "epoch-1.weights.h5", "training_metadata.json"]  # fmt: skip
    saved.save_epoch(model, {"loss": [0.5, 0.4]}, [np.zeros(2)])
    # The previous epoch's weights go once the manifest names the new ones.
    assert sorted(p.name for p in saved.directory.iterdir()) == [
        "best-2.npz", "epoch-2.weights.h5", "training_metadata.json"]  # fmt: skip
    assert saved.restore(model) == 2 and saved.best_weights()[0].shape == (2,)
    (saved.directory / "best-2.npz").unlink()
    with pytest.raises(CheckpointUnreadable, match="best-2.npz cannot be read"):
        saved.verify()
    (saved.directory / "training_metadata.json").write_text('{"epoch": 2, "hist')
    with pytest.raises(CheckpointUnreadable, match="training_metadata.json cannot be read"):
        saved.verify()
    assert saved.exists() and saved.completed_epochs() == 0


@pytest.mark.parametrize("how", ["truncated", "overwritten"])
def test_weights_damaged_after_they_were_saved_are_found_before_they_load(tmp_path, how):
    """h5py may load a file with overwritten bytes without a complaint: the sha256 notices."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    saved = Checkpoint(tmp_path / "run")
    saved.save_epoch(model, {"loss": [0.5]}, None)
    damage(saved.directory / "epoch-1.weights.h5", how)
    with pytest.raises(CheckpointUnreadable, match="epoch-1.weights.h5 cannot be read"):
        saved.restore(model)


def test_a_write_that_fails_midway_leaves_the_previous_file(tmp_path: Path):
    path = tmp_path / "manifest.json"
    write_atomically(path, lambda p: p.write_text("old"))

    def half_then_full_disk(partial: Path) -> None:
        partial.write_text("ne")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as raised:
        write_atomically(path, half_then_full_disk)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.slow
def test_two_processes_resuming_one_run_at_once(store: Store, tmp_path: Path, mnist_dir: Path):
    """The same command started twice after a kill: one resumes the run, the other says in one
    line which process does, and records nothing."""
    args = [*EPOCHS_OF_SECONDS, "train.epochs=4"]
    run_id = killed_run(store, tmp_path, mnist_dir, args, 1)

    started = time.monotonic()
    both = [start_run(store, tmp_path, mnist_dir, *args) for _ in range(2)]
    try:
        outputs = [proc.communicate(timeout=300)[0] for proc in both]
    finally:
        for proc in both:
            if proc.poll() is None:
                proc.kill()
    codes = [proc.returncode for proc in both]
    assert sorted(codes) == [0, 1], outputs
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    (line,) = [line for line in outputs[loser].splitlines() if "is being resumed by" in line]
    print(f"{time.monotonic() - started:.1f}s for both; the other said: {line}")
    assert f"run {run_id} (" in line
    assert f"process {both[winner].pid} on {socket.gethostname()}" in line
    assert "Traceback" not in outputs[loser] and "Training" not in outputs[loser]
    assert f"Resuming run {run_id}" in outputs[winner]

    (run,) = store.runs()
    assert run.info.status == "FINISHED"
    assert steps(store.client(), run_id, "loss") == [0, 1, 2, 3]  # each epoch once
