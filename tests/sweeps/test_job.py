"""A sweep's outcome from its children's statuses, and what a sweep job refuses (no MLflow)."""

from __future__ import annotations

import pytest

from mnist_exp.config import ConfigError, validate
from mnist_exp.sweeps.job import check_sweep_job, with_seeds
from mnist_exp.sweeps.parent_run import sweep_outcome
from tests.helpers import TINY, assert_clean_error, compose_config


def test_all_finished_or_skipped_is_finished():
    outcome = sweep_outcome({"a": "FINISHED", "b": "FINISHED"}, skipped=1, interrupted=False)
    assert outcome.status == "FINISHED"
    assert sweep_outcome({}, skipped=2, interrupted=False).status == "FINISHED"


def test_one_failure_fails_the_sweep_even_if_interrupted_later():
    outcome = sweep_outcome({"a": "FAILED", "b": "FINISHED"}, skipped=0, interrupted=True)
    assert outcome.status == "FAILED"


def test_a_child_left_running_is_ended_killed_on_interrupt_and_failed_otherwise():
    interrupted = sweep_outcome({"a": "FINISHED", "b": "RUNNING"}, 0, interrupted=True)
    assert interrupted.status == "KILLED" and interrupted.ended == {"a": "FINISHED", "b": "KILLED"}
    lost = sweep_outcome({"a": "FINISHED", "b": "RUNNING"}, 0, interrupted=False)
    assert lost.status == "FAILED" and lost.ended["b"] == "FAILED"


def test_a_killed_child_kills_the_sweep():
    assert sweep_outcome({"a": "KILLED"}, 0, interrupted=False).status == "KILLED"


def test_a_pruned_trial_is_a_result_not_a_killed_sweep():
    outcome = sweep_outcome({"a": "FINISHED", "b": "PRUNED"}, 0, interrupted=False)
    assert outcome.status == "FINISHED" and outcome.ended == {"a": "FINISHED", "b": "PRUNED"}


def test_no_job_at_all_is_no_outcome():
    assert sweep_outcome({}, skipped=0, interrupted=True).status is None


def test_a_sweep_job_without_validation_data_is_refused():
    with pytest.raises(ConfigError, match=r"train.validation_split=0.0: .* val_accuracy"):
        check_sweep_job(validate(compose_config("train.validation_split=0")))
    check_sweep_job(validate(compose_config()))  # the tutorial's 0.2 is fine


def test_seeds_become_a_sweep_axis_unless_the_seed_is_swept_already():
    assert with_seeds(["model.hidden=64,128"], None, 3) == [
        "model.hidden=64,128",
        "seed=range(1,4)",
    ]
    assert with_seeds(["seed=7,8"], None, 3) == ["seed=7,8"]
    assert with_seeds([], {"seed": "1,2"}, 5) == []  # the preset's own seed axis
    assert with_seeds(["model.hidden=64"], None, None) == ["model.hidden=64"]


@pytest.mark.slow
def test_a_bad_number_of_seeds_is_one_line_and_trains_nothing(run_cli, store):
    done = run_cli("-m", "hydra.sweeper.seeds=0", *TINY, *store.overrides)
    assert_clean_error(done, "hydra.sweeper.seeds=0: must be a whole number >= 1")
    assert "Training" not in done.stdout
