"""The Optuna search: trials as child runs, a conditional space, pruning, a durable study."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

from mnist_exp.names import PARENT_TAG, PRUNED_TAG, TRIAL_TAG
from mnist_exp.server import tracking_server
from mnist_exp.sweeps.search.space import (
    CNN_HEAD_WIDTHS,
    DENSE_WIDTHS,
    custom_space,
    extremes,
    model_family,
    parse,
)
from mnist_exp.sweeps.search.study import INTERRUPTED_ATTR, default_study_name
from tests.helpers import (
    TINY,
    artifact_text,
    assert_clean_error,
    cli_env,
    compose_config,
    default_sigint,
    parent_and_children,
    runs_in,
)

SEARCH = ["-m", "+experiment=optuna_search", *TINY]
# Every trial is pruned after its first epoch: no validation accuracy reaches 1.01.
PRUNE_ALL = ["hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.lower=1.01",
             "train.epochs=2"]  # fmt: skip


def study_of(parent, storage: str):
    return optuna.load_study(study_name=parent.data.tags["optuna_study"], storage=storage)


def test_sweep_syntax_becomes_optuna_distributions():
    space, fixed = parse([
        "model.dropout=interval(0.0, 0.5)", "train.epochs=2", "model.hidden=choice(64, 128)",
        "train.learning_rate=tag(log, interval(0.0001, 0.01))",
        "train.batch_size=range(32, 129, 32)",
    ])  # fmt: skip
    assert fixed == ["train.epochs=2"]
    assert space["model.dropout"] == optuna.distributions.FloatDistribution(0.0, 0.5)
    assert space["train.learning_rate"].log and space["train.learning_rate"].high == 0.01
    assert space["model.hidden"].choices == (64, 128)
    assert space["train.batch_size"] == optuna.distributions.IntDistribution(32, 128, step=32)
    assert "model.dropout=0.5" in extremes(space) and "model.hidden=64" in extremes(space)


@pytest.mark.slow
def test_a_space_reaching_a_bad_value_is_refused_before_anything_trains(run_cli, store):
    done = run_cli(*SEARCH, "model.dropout=interval(0.0, 1.5)", *store.overrides)
    assert_clean_error(done, "model.dropout=1.5: must be >= 0.0 and < 1.0")
    assert "Training" not in done.stdout
    assert store.runs() == []


@pytest.mark.slow
def test_a_bad_pruner_setting_is_one_clear_message(run_cli, store):
    done = run_cli(*SEARCH, "hydra.sweeper.pruner.n_startup_trials=-1", *store.overrides)
    assert_clean_error(done, "hydra.sweeper.pruner", "n_startup_trials=-1")
    assert store.runs() == []


@pytest.mark.slow
def test_search_runs_seeded_conditional_trials_as_child_runs_and_keeps_its_verdict(run_cli, store):
    done = run_cli(*SEARCH, "hydra.sweeper.n_trials=3", *store.overrides)
    assert done.returncode == 0, done.stdout
    runs = store.runs()
    parent, trials = parent_and_children(runs)
    assert len(trials) == 3 and len(runs) == 4
    assert parent.info.status == "FINISHED"
    assert all(t.info.status == "FINISHED" for t in trials)
    assert sorted(t.data.tags[TRIAL_TAG] for t in trials) == ["0", "1", "2"]
    for trial in trials:
        params = trial.data.params
        assert 0.0 <= float(params["model.dropout"]) <= 0.5
        assert 1e-4 <= float(params["train.learning_rate"]) <= 1e-2
        if params["model.family"] == "dense":  # the width that belongs to the family chosen
            assert int(params["model.hidden"]) in DENSE_WIDTHS and "model.filters" not in params
        else:
            assert int(params["model.dense"]) in CNN_HEAD_WIDTHS and "model.hidden" not in params
    # The study's verdict is kept with the parent: the best trial's validation accuracy and its
    # params, the importance figure.
    best = max(trials, key=lambda t: t.data.metrics["val_accuracy"])
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(
        best.data.metrics["val_accuracy"]
    )
    assert parent.data.params["best.model.dropout"] == best.data.params["model.dropout"]
    results = yaml.safe_load(artifact_text(store.client(), parent, "optimization_results.yaml"))
    assert results["best_value"] == pytest.approx(best.data.metrics["val_accuracy"])
    artifacts = {a.path for a in store.client().list_artifacts(parent.info.run_id)}
    assert "param_importances.png" in artifacts
    study = study_of(parent, f"sqlite:///{store.root}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3

    # The same command again: the study already holds its 3 trials, so nothing trains; as in a
    # re-run sweep, the new parent run lists the 3 trial runs as skipped.
    again = run_cli(*SEARCH, "hydra.sweeper.n_trials=3", *store.overrides)
    assert again.returncode == 0, again.stdout
    assert "3 of 3 trials done, 0 to go" in again.stdout
    assert "0 finished, 0 failed, 0 killed, 3 skipped" in again.stdout
    assert len([r for r in store.runs() if TRIAL_TAG in r.data.tags]) == 3


def test_the_pruning_callback_cuts_between_epochs_but_never_after_the_last():
    from mnist_exp.errors import PrunedTrial
    from mnist_exp.sweeps.search.trial import pruning_callback

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(1.01))
    cut, last = (pruning_callback(study.ask()) for _ in range(2))
    for callback in (cut, last):
        callback.set_params({"epochs": 2})
    with pytest.raises(PrunedTrial) as pruned:
        cut.on_epoch_end(0, {"val_accuracy": 0.5})
    assert pruned.value.epoch == 1
    last.on_epoch_end(1, {"val_accuracy": 0.5})  # the second of 2 epochs: nothing left to save
    assert [t.intermediate_values for t in study.trials] == [{1: 0.5}, {2: 0.5}]


@pytest.mark.slow
def test_a_pruned_trial_is_a_killed_run_with_its_partial_curve(run_cli, run_tool, store):
    done = run_cli(*SEARCH, *PRUNE_ALL, "hydra.sweeper.n_trials=2", *store.overrides)
    assert done.returncode == 0, done.stdout
    assert "0 finished, 2 pruned, 0 failed, 0 killed, 0 skipped" in done.stdout
    assert "Error executing job" not in done.stdout
    parent, trials = parent_and_children(store.runs())
    assert parent.info.status == "FINISHED"
    for trial in trials:
        assert trial.info.status == "KILLED" and trial.data.tags[PRUNED_TAG] == "1"
        history = store.client().get_metric_history(trial.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [0]  # the first epoch, kept; no second one
    study = study_of(parent, f"sqlite:///{store.root}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    assert [list(t.intermediate_values) for t in study.trials] == [[1], [1]]  # epochs trained

    compared = run_tool("compare", "--out", str(store.root / "compare"), store=store)
    assert compared.returncode == 0, compared.stderr
    assert compared.stdout.count("PRUNED (epoch 1)") == 2


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "crash"])
def test_an_interrupted_search_continues_where_it_stopped(store, tmp_path, mnist_dir, run_cli,
                                                          sig):  # fmt: skip
    # Six epochs and no pruning: the signal lands while trial 1 trains, not after it ended
    # (3 epochs of 1000 images took less than the test's polling once, and the rerun found 2
    # trials done).
    command = [*SEARCH, "train.epochs=6", "hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=3",
               *store.overrides]  # fmt: skip
    # Once trial 0 is done and trial 1 has trained an epoch.
    code, first = interrupted(command, tmp_path, mnist_dir, sig, lambda out: "\t#1 : " in out
                              and "Epoch 2/6" in out.split("\t#1 : ")[1])  # fmt: skip
    assert code == (130 if sig == signal.SIGINT else -sig), first

    again = run_cli(*command)
    assert again.returncode == 0, again.stdout[-3000:]
    if sig == signal.SIGKILL:  # nothing could tell the study: the rerun finds the trial RUNNING
        assert "1 trial(s) left running by an interrupted search will run again" in again.stdout
    assert "1 of 3 trials done, 2 to go" in again.stdout
    # Trial 0's run, done before the interrupt, is linked to the new parent as a skipped job.
    assert "2 finished, 0 failed, 0 killed, 1 skipped" in again.stdout, again.stdout[-3000:]
    trials = [r for r in store.runs() if TRIAL_TAG in r.data.tags]
    by_number = {r.data.tags[TRIAL_TAG]: r for r in trials}
    assert len(trials) == 4  # trial 0 was not trained again
    # The same search again: one parent run, continued, with every trial its child.
    assert len({r.data.tags[PARENT_TAG] for r in trials}) == 1
    assert "(continued: the same sweep, last" in again.stdout
    # A killed process records nothing: the rerun ends its run FAILED as an orphan.
    lost = "KILLED" if sig == signal.SIGINT else "FAILED"
    assert [by_number[n].info.status for n in "0123"] == ["FINISHED", lost, "FINISHED",
                                                          "FINISHED"]  # fmt: skip
    study = study_of(by_number["0"], f"sqlite:///{store.root}/optuna.db")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                      TrialState.COMPLETE]  # fmt: skip
    assert study.trials[1].user_attrs[INTERRUPTED_ATTR]
    assert study.trials[2].params == study.trials[1].params  # the interrupted one, again
    assert study.trials[3].params != study.trials[0].params  # the sampler went on, not over


@pytest.mark.slow
def test_parallel_search_prunes_through_a_server(run_cli, store):
    storage = f"sqlite:///{store.root}/optuna.db"
    with tracking_server(store.root) as uri:
        done = run_cli(*SEARCH, *PRUNE_ALL, "hydra.sweeper.n_trials=4", "hydra/launcher=parallel",
                       "tracking=server", f"hydra.sweeper.storage={storage}",
                       env={"MLFLOW_TRACKING_URI": uri})  # fmt: skip
        assert done.returncode == 0, done.stdout
        runs = runs_in(MlflowClient(uri))
    parent, trials = parent_and_children(runs)
    assert "2 at a time" in done.stdout
    assert "0 finished, 4 pruned, 0 failed, 0 killed, 0 skipped" in done.stdout
    assert sorted(t.data.tags[TRIAL_TAG] for t in trials) == ["0", "1", "2", "3"]
    assert all(t.info.status == "KILLED" and t.data.tags[PRUNED_TAG] == "1" for t in trials)
    spans = sorted((t.info.start_time, t.info.end_time) for t in trials)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))
    study = study_of(parent, storage)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 4


# The default study name of `+experiment=optuna_search`, as the search named it before the
# package had subpackages (b9fa6c6, custom space mnist_exp.search_space.model_family).
STUDY_BEFORE_THE_MOVE = "mnist-search-d3242a5f44"


def test_a_search_started_before_the_package_moved_continues_its_study():
    cfg = compose_config("+experiment=optuna_search", hydra=True)
    chosen = cfg.hydra.sweeper
    params = [f"{key}={value}" for key, value in chosen.params.items()]
    assert chosen.custom_search_space == "mnist_exp.sweeps.search.space.model_family"
    name = default_study_name(cfg.tracking.experiment, params, chosen.custom_search_space, chosen)
    assert name == STUDY_BEFORE_THE_MOVE
    # A command that still names the old path runs the same function, in the same study.
    assert custom_space("mnist_exp.search_space.model_family") is model_family
    old = default_study_name(cfg.tracking.experiment, params,
                             "mnist_exp.search_space.model_family", chosen)  # fmt: skip
    assert old == STUDY_BEFORE_THE_MOVE
    # Any other change to the search is another study.
    assert default_study_name(cfg.tracking.experiment, params[:1], None, chosen) != name


@pytest.mark.slow
def test_a_search_confirms_its_leaders_on_fresh_seeds_and_resumes_an_interrupted_confirmation(
    store, tmp_path, mnist_dir, run_cli
):
    # Two trials, then both again on two fresh seeds; four epochs, so that the interrupt lands
    # while a confirmation run trains.
    command = [*SEARCH, "train.epochs=4", "hydra/sweeper/pruner=none", "hydra.sweeper.n_trials=2",
               "hydra.sweeper.confirm.top_k=2", "hydra.sweeper.confirm.seeds=2",
               *store.overrides]  # fmt: skip
    # Once the first confirmation run has trained an epoch.
    code, first = interrupted(
        command,
        tmp_path,
        mnist_dir,
        signal.SIGINT,
        lambda out: "Epoch 2/4" in out.partition("Confirming the 2 best trials")[2],
    )
    assert code == 130, first[-3000:]

    again = run_cli(*command)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "2 of 2 trials done, 0 to go" in again.stdout
    assert "Confirmed on 2 fresh seeds: trial" in again.stdout
    runs = store.runs()
    confirming = [r for r in runs if "confirm" in r.data.tags]
    trials = [r for r in runs if TRIAL_TAG in r.data.tags]
    assert len(trials) == 2  # no trial trained again
    # Each leader on each fresh seed once: the interrupted run resumed, none ran twice.
    finished = [r for r in confirming if r.info.status == "FINISHED"]
    assert sorted((r.data.tags["confirm"], r.data.params["seed"]) for r in finished) == sorted(
        (str(n), s) for n in (0, 1) for s in ("43", "44")
    )
    assert len(confirming) == 4 and any("resumed" in r.data.tags for r in confirming)
    for run in finished:
        steps = [m.step for m in store.client().get_metric_history(run.info.run_id, "loss")]
        assert steps == [0, 1, 2, 3]  # every epoch once
    parent = next(r for r in runs if r.info.run_id == again_parent(again.stdout))
    assert parent.data.metrics["confirmed.n"] == 2
    assert parent.data.metrics["confirmed.val_ci_low"] <= parent.data.metrics["confirmed.val_mean"]
    assert parent.data.metrics["confirmed.val_mean"] <= parent.data.metrics["confirmed.val_ci_high"]
    assert "confirmed.model" in parent.data.params
    assert parent.data.tags["confirmed.trial"] in ("0", "1")


def interrupted(command: list[str], tmp_path, mnist_dir, sig: int, ready) -> tuple[int, str]:
    """Run the search, send `sig` once what it printed is `ready`; its exit code and output.

    Read from what the search prints, not from its stores: polling a SQLite file would hold up
    the writes of the very run being interrupted.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_exp.run", *command, f"hydra.sweep.dir={tmp_path}/first"],
        cwd=tmp_path, env=cli_env(mnist_dir), text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, preexec_fn=default_sigint,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not ready("".join(lines)):
            time.sleep(0.05)
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        reader.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(lines)


def again_parent(printed: str) -> str:
    return re.findall(r"Sweep parent run ([0-9a-f]{32})", printed)[-1]
