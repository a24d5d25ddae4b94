"""Which differences are real: intervals, "tied with the best", the chance lead of single seeds,
and figures that stay readable at thirty runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from scipy import stats

from mnist_exp.run_table import comparison_table, fitted, in_config_order
from mnist_exp.sweeps import variants
from mnist_exp.training import plots


def runs_of(means: dict[str, list[float]]) -> pd.DataFrame:
    """One row per run: each variant's seeds 1, 2, ... with these best val accuracies."""
    return pd.DataFrame([
        {"variant": name, "variant_name": f"dense-{name} epochs=1", "seed": str(seed),
         "run_id": f"{name}-{seed}", "best_val_accuracy": value, "test_accuracy": value}
        for name, values in means.items() for seed, value in enumerate(values, start=1)
    ])  # fmt: skip


def test_a_variants_interval_is_scipys_t_interval_and_best_mean_comes_first():
    table = variants.summarise(
        runs_of({"h64": [0.971, 0.973, 0.972], "h512": [0.978, 0.975, 0.98]})
    )
    assert list(table.variant) == ["h512", "h64"]
    values = np.array([0.978, 0.975, 0.98])
    low, high = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
    assert (table.val_ci_low[0], table.val_ci_high[0]) == pytest.approx((low, high))
    assert table.n.tolist() == [3, 3] and table.val_sd[0] == pytest.approx(values.std(ddof=1))
    assert table.label.tolist() == ["dense-h512", "dense-h64"]  # what tells them apart


def test_no_real_difference_is_tied_and_a_clear_one_is_not():
    seeds = [0.9712, 0.9745, 0.9731, 0.9760, 0.9722]
    noise = [0.002, -0.003, 0.001, -0.001, 0.0015]
    table = variants.summarise(runs_of({
        "same": seeds,  # the very same draws, seed by seed: a change that does nothing
        "also-same": seeds,
        "noisy": [s + d for s, d in zip(seeds, noise, strict=True)],
        "worse": [s - 0.02 for s in seeds],
    }))  # fmt: skip
    tied = dict(zip(table.variant, table.tied_with_best, strict=True))
    assert tied == {"same": True, "also-same": True, "noisy": True, "worse": False}
    said = variants.verdict(table)
    assert "are tied with the best at 5 seeds" in said and "dense-worse is worse" in said


def test_unpaired_seeds_use_welchs_test_and_many_comparisons_are_holm_corrected():
    # Different seeds: Welch's t-test, not the paired one.
    a, b = {"1": 0.970, "2": 0.972, "3": 0.971}, {"4": 0.965, "5": 0.964, "6": 0.966}
    assert variants.p_value(a, b) == pytest.approx(stats.ttest_ind([*a.values()], [*b.values()],
                                                   equal_var=False).pvalue)  # fmt: skip
    # Each of five variants barely below the leader on its own (p just under 0.05): after
    # Holm's correction for testing five, none is distinguishable from it.
    leader = [0.9700, 0.9710, 0.9720, 0.9730]
    wobble = [0.0005, -0.0004, 0.0003, -0.0004]
    close = {f"v{i}": [x - 0.0012 + d for x, d in zip(leader, wobble, strict=True)]
             for i in range(5)}  # fmt: skip
    table = variants.summarise(runs_of({"leader": leader, **close}))
    assert (table.p_vs_best[1:] < 0.05).all()
    assert table.tied_with_best.tolist() == [True] * 6


def test_single_seeds_get_the_lead_chance_alone_gives_and_the_seeds_that_would_tell():
    table = variants.summarise(runs_of({"a": [0.9780], "b": [0.9775], "c": [0.9760]}))
    assert table.tied_with_best.tolist() == [True, None, None]
    said = variants.verdict(table)
    assert "ran one seed" in said and "chance alone puts the best about 0.12 points" in said
    assert "leads the next by 0.05 points" in said and "seeds per variant would tell" in said
    # The published figures for the tutorial's network (sd 0.14 points): the best of 50 equal
    # configs leads by about 0.3 points; 3 / 5 / 10 seeds see 0.43 / 0.28 / 0.19 points.
    assert variants.expected_lead(50) * 100 == pytest.approx(0.31, abs=0.01)
    assert [variants.seeds_to_separate(gap / 100) for gap in (0.43, 0.285, 0.19)] == [3, 5, 10]


def test_columns_keep_the_configs_order_whatever_order_mlflow_returns():
    columns = ["params.train.learning_rate", "params.seed", "params.model.hidden",
               "params.model.dropout"]  # fmt: skip
    assert (
        in_config_order(columns)
        == in_config_order(columns[::-1])
        == [
            "params.model.hidden",
            "params.model.dropout",
            "params.train.learning_rate",
            "params.seed",
        ]
    )
    runs = pd.DataFrame({
        "run_id": ["a", "b"], "status": ["FINISHED"] * 2, "tags.mlflow.runName": ["x", "y"],
        "params.model.dropout": ["0", "0.2"], "params.model.hidden": ["64", "128"],
        "metrics.test_accuracy": [0.9, 0.8], "metrics.fit_seconds": [1.0, 1.0],
    })  # fmt: skip
    curves = {"a": [0.9], "b": [0.8]}
    swapped = runs[
        [
            "run_id",
            "status",
            "tags.mlflow.runName",
            "params.model.hidden",
            "params.model.dropout",
            "metrics.test_accuracy",
            "metrics.fit_seconds",
        ]
    ]
    assert list(comparison_table(runs, curves).columns) == list(
        comparison_table(swapped, curves).columns
    )
    assert list(comparison_table(runs, curves).columns)[1:3] == ["model.hidden", "model.dropout"]


def test_a_wide_table_fits_the_terminal_and_says_what_it_left_out():
    shown = pd.DataFrame({"run": ["dense-h64"], "a_long_param_name": ["x" * 30],
                          "another_one": ["y" * 30], "best_val_accuracy": ["0.9700"]})  # fmt: skip
    text, left_out = fitted(shown, ["run", "best_val_accuracy"], width=60)
    assert max(map(len, text.splitlines())) <= 60 and left_out == ["another_one"]


def legend_is_outside(fig) -> bool:
    FigureCanvasAgg(fig).draw()
    (ax,) = [a for a in fig.axes if a.get_legend() is not None]
    legend = ax.get_legend().get_window_extent()
    return legend.x0 >= ax.get_window_extent().x1


def test_thirty_runs_keep_the_legend_outside_the_axes_and_every_line_its_own_look():
    rng = np.random.default_rng(0)
    curves = {f"run {i}": list(0.9 + rng.random(5) / 20) for i in range(30)}
    fig = plots.validation_curves(curves)
    assert legend_is_outside(fig)
    lines = fig.axes[0].get_lines()
    assert len({(line.get_color(), line.get_linestyle()) for line in lines}) == 30
    bands = variants.curve_bands({f"variant {i}": [c, c] for i, c in enumerate(curves.values())})
    fig = plots.variant_curves(bands)
    assert legend_is_outside(fig)
    assert len(fig.axes[0].collections) == 30  # a band per variant
