"""A sweep's progress lines: the time left, guessed from what the jobs so far measured."""

from __future__ import annotations

import logging

import pytest

from mnist_exp.sweeps import progress
from tests.helpers import compose_config


@pytest.fixture
def sweep(monkeypatch, caplog):
    """A sweep's progress as its sweeper starts it; the lines it says."""
    monkeypatch.delenv(progress.SWEEP_JOBS_ENV, raising=False)
    monkeypatch.delenv(progress.SWEEP_WORK_ENV, raising=False)
    caplog.set_level(logging.INFO, logger="mnist_exp")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("[")]

    yield lines
    progress.sweep_ended()


def test_a_jobs_work_is_its_epochs_times_its_training_images():
    assert progress.work(compose_config()) == 10 * 60_000
    assert progress.work(compose_config("train.epochs=3", "data.limit_train=1000")) == 3_000


def test_the_time_left_counts_each_jobs_epochs_and_images(sweep):
    # -m train.epochs=1,10,100 on 1000 images: the first job took 3 s, 1 s of it fitting.
    progress.sweep_has(3, [1_000, 10_000, 100_000])
    progress.job_done(0, "e1", 0.8, seconds=3.0, fit_seconds=1.0, skipped=None)
    # 2 s besides the fit for each job left, and 1 ms of fit per image and epoch.
    assert sweep() == ["[1/3] e1: val 0.8000 in 3 s; about 114 s left"]
    progress.job_done(1, "e10", 0.9, seconds=12.0, fit_seconds=9.0, skipped=None)
    # The first job's measures, which paid for one-off work, now left out: 3 s besides the fit,
    # 0.9 ms of fit per image and epoch.
    assert sweep()[1] == "[2/3] e10: val 0.9000 in 12 s; about 93 s left"


def test_jobs_alike_are_counted_and_jobs_run_side_by_side_share_the_time(sweep):
    progress.sweep_has(4, [5_000] * 4)
    progress.job_done(0, "a", 0.9, seconds=10.0, fit_seconds=6.0, skipped=None, side_by_side=2)
    assert sweep() == ["[1/4] a: val 0.9000 in 10 s; about 15 s left"]


def test_skipped_jobs_teach_no_pace_and_leave_nothing_to_do(sweep):
    progress.sweep_has(3, [1_000] * 3)
    progress.job_done(0, "a", 0.9, seconds=0.0, fit_seconds=0.0, skipped="abc")
    assert sweep() == ["[1/3] a: skipped, already finished in run abc"]  # nothing measured yet
    progress.job_done(1, "b", 0.9, seconds=4.0, fit_seconds=2.0, skipped=None)
    assert sweep()[1] == "[2/3] b: val 0.9000 in 4 s; about 4 s left"


def test_jobs_that_end_out_of_order_are_counted_as_they_end(sweep):
    # hydra/launcher=together: the workers hand their lines to the launching process.
    progress.sweep_has(3, [1_000, 1_000, 10_000])
    progress.job_ended(2, "big", "val 0.9", 12.0, 10.0, workers=3)
    progress.job_ended(0, "small", "val 0.8", 3.0, 1.0, workers=3)
    progress.job_ended(1, "small2", "val 0.8", 3.0, 1.0, workers=3)
    assert sweep() == [
        "[1/3] big: val 0.9; about 2 s left",  # two jobs of 2 s besides a 1-s fit, 3 at a time
        "[2/3] small: val 0.8; about 1 s left",
        "[3/3] small2: val 0.8; done",
    ]


def test_without_the_work_of_each_job_the_jobs_are_taken_as_alike(sweep, monkeypatch):
    monkeypatch.setenv(progress.SWEEP_JOBS_ENV, "3")  # a sweeper that says no work
    progress.job_done(0, "a", 0.9, seconds=5.0, fit_seconds=4.0, skipped=None)
    assert sweep() == ["[1/3] a: val 0.9000 in 5 s; about 10 s left"]
