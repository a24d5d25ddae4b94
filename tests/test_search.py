"""The Optuna preset: real trials as child runs, a seeded sampler, and a search that resumes."""

from __future__ import annotations

import pytest
import yaml

from mnist_exp.search_space import CNN_HEAD_WIDTHS, DENSE_WIDTHS
from tests.helpers import TINY, artifact_text, parent_and_children

pytestmark = pytest.mark.slow

SEARCH = ["-m", "+experiment=optuna_search", "hydra.sweeper.n_trials=3", *TINY]


def test_optuna_search_runs_seeded_trials_as_child_runs_and_resumes(run_cli, store):
    done = run_cli(*SEARCH, *store.overrides)
    assert done.returncode == 0, done.stdout
    runs = store.runs()
    parent, trials = parent_and_children(runs)
    assert len(trials) == 3 and len(runs) == 4
    assert parent.info.status == "FINISHED"
    assert all(t.info.status == "FINISHED" for t in trials)
    for trial in trials:
        params = trial.data.params
        assert 0.0 <= float(params["model.dropout"]) <= 0.5
        assert 1e-4 <= float(params["train.learning_rate"]) <= 1e-2
        if "model.hidden" in params:  # the width that belongs to the family Optuna chose
            assert int(params["model.hidden"]) in DENSE_WIDTHS and "model.filters" not in params
        else:
            assert int(params["model.dense"]) in CNN_HEAD_WIDTHS
    # Optuna's verdict is kept with the parent, and it is the best trial's validation accuracy.
    results = yaml.safe_load(artifact_text(store.client(), parent, "optimization_results.yaml"))
    best = max(t.data.metrics["val_accuracy"] for t in trials)
    assert results["best_value"] == pytest.approx(best)

    # The same command again: the seeded sampler proposes the same trials, all already done.
    again = run_cli(*SEARCH, *store.overrides)
    assert again.returncode == 0, again.stdout
    assert "0 finished, 0 failed, 0 killed, 3 skipped" in again.stdout
    assert len([r for r in store.runs() if "model.dropout" in r.data.params]) == 3
