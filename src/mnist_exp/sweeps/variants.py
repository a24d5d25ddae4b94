"""Which differences are real: a variant's seeds summed up as a mean with its 95 % t-interval,
and each variant tested against the best one (paired by seed where the seeds match, Holm's
correction for testing many), so that a table says "tied with the best" rather than ranking
draws. The method and its references: docs/comparing.md.

Statistics come from scipy.stats and statsmodels; nothing here is a hand-written formula.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import integrate, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

CONFIDENCE = 0.95
POWER = 0.8
# Past this many seeds per variant, a lead is called too small to tell from chance.
MOST_SEEDS = 1000
# The seed-to-seed sd of the tutorial network's accuracy, published over 10 seeds: what a sweep
# of single seeds is judged against, since one seed per variant cannot measure its own.
PUBLISHED_SEED_SD = 0.0014
# Per run: what the variants are judged on (validation: the test set never chooses), and after.
SCORE, AFTER = "best_val_accuracy", "test_accuracy"
COLUMNS = ["variant", "variant_name", "n", "val_mean", "val_sd", "val_ci_low", "val_ci_high",
           "test_mean", "p_vs_best", "tied_with_best", "seeds", "best_run_id"]  # fmt: skip


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per variant, best mean first, from one row per run (columns variant,
    variant_name, seed, run_id, best_val_accuracy, test_accuracy). Runs without a score (failed,
    killed, pruned) are left out: they are not draws of what the variant does."""
    scored = runs.dropna(subset=[SCORE])
    rows = []
    for variant, group in scored.groupby("variant", sort=False):
        values = group[SCORE].to_numpy(float)
        low, high = interval(values)
        best = group.loc[group[SCORE].idxmax()]
        rows.append({
            "variant": variant, "variant_name": group["variant_name"].iloc[0], "n": len(values),
            "val_mean": values.mean(), "val_sd": values.std(ddof=1) if len(values) > 1 else np.nan,
            "val_ci_low": low, "val_ci_high": high, "test_mean": group[AFTER].mean(),
            "seeds": dict(sorted(zip(group["seed"].astype(str), values, strict=True),
                                 key=lambda item: (len(item[0]), item[0]))),
            "best_run_id": best["run_id"],
        })  # fmt: skip
    table = pd.DataFrame(
        rows, columns=[c for c in COLUMNS if c not in ("p_vs_best", "tied_with_best")]
    )
    table = table.sort_values(["val_mean", "test_mean"], ascending=False, ignore_index=True)
    table["p_vs_best"], table["tied_with_best"] = tied_with_best(table)
    table["label"] = short_names(table["variant_name"].tolist())
    return table[[*COLUMNS, "label"]]


def short_names(names: list[str]) -> list[str]:
    """Each name without the overrides that every name has (`limit_train=1000 epochs=1`): what
    tells the variants apart, after the model's short name."""
    split = [name.split(" ") for name in names]
    common = set.intersection(*(set(parts[1:]) for parts in split)) if split else set()
    return [" ".join([parts[0], *(p for p in parts[1:] if p not in common)]) for parts in split]


def interval(values: np.ndarray) -> tuple[float, float]:
    """The 95 % t-interval of the mean (n is small: a handful of seeds); NaN for one value."""
    if len(values) < 2:
        return np.nan, np.nan
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    found = stats.ttest_1samp(values, 0.0).confidence_interval(CONFIDENCE)
    return float(found.low), float(found.high)


def p_value(leader: dict[str, float], other: dict[str, float]) -> float:
    """Two-sided p of "the same mean": paired by seed (ttest_rel) when both ran the same seeds,
    Welch's ttest_ind otherwise; NaN when either has fewer than two seeds."""
    if len(leader) < 2 or len(other) < 2:
        return np.nan
    if leader.keys() == other.keys():
        a, b = (np.array([d[seed] for seed in sorted(leader)]) for d in (leader, other))
        if np.all(a == b):
            return 1.0  # every seed gave the same: no difference at all
        if np.ptp(a - b) == 0:
            return 0.0  # the same difference on every seed
        return float(stats.ttest_rel(a, b).pvalue)
    a, b = np.array(list(leader.values())), np.array(list(other.values()))
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def tied_with_best(table: pd.DataFrame) -> tuple[list[float], list[object]]:
    """Each variant's p against the leader (row 0) and whether it is tied with it: not
    distinguishable at 95 % after Holm's correction over all the comparisons. None (unknown)
    where a variant or the leader has a single seed."""
    if table.empty:
        return [], []
    leader = table["seeds"].iloc[0]
    p = [np.nan] + [p_value(leader, seeds) for seeds in table["seeds"].iloc[1:]]
    tied: list[object] = [True] + [None] * (len(table) - 1)
    tested = [i for i in range(1, len(table)) if not math.isnan(p[i])]
    if tested:
        reject = multipletests([p[i] for i in tested], alpha=1 - CONFIDENCE, method="holm")[0]
        for i, different in zip(tested, reject, strict=True):
            tied[i] = not different
    return p, tied


def expected_lead(k: int, sd: float = PUBLISHED_SEED_SD) -> float:
    """How far above their average the best of k equally good single-seed variants lands by
    chance alone: sd times the expected maximum of k standard normal draws."""
    if k < 2:
        return 0.0
    density = lambda x: x * k * stats.norm.pdf(x) * stats.norm.cdf(x) ** (k - 1)  # noqa: E731
    return sd * integrate.quad(density, -np.inf, np.inf)[0]


def seeds_to_separate(gap: float, sd: float = PUBLISHED_SEED_SD) -> int | None:
    """Seeds per variant that tell a true lead of `gap` from chance (two-sample t-test, 80 %
    power, 5 % level; at least 2); None for no lead at all, or one that needs more than
    MOST_SEEDS."""
    if gap <= 0:
        return None
    test, effect, alpha = TTestIndPower(), gap / sd, 1 - CONFIDENCE

    def enough(n: int) -> bool:
        power = test.power(effect_size=effect, nobs1=n, alpha=alpha)
        # statsmodels gives NaN where the power is all but 1 (the noncentral t far in its tail).
        return bool(math.isnan(power) or power >= POWER)

    # statsmodels' solve_power fails to converge for small effects: the smallest n with enough
    # power, found by doubling and halving.
    low, high = 1, 2
    while not enough(high):
        if high >= MOST_SEEDS:
            return None
        low, high = high, min(2 * high, MOST_SEEDS)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def verdict(table: pd.DataFrame) -> str:
    """What the table found, in words."""
    if table.empty:
        return "No finished runs to compare."
    names = table["label"].tolist()
    if len(table) == 1:
        row = table.iloc[0]
        return f"One variant, {names[0]}, at {row.n} seed(s): nothing to compare it with."
    if (table["n"] < 2).all():
        return single_seed_verdict(table)
    tied = [n for n, t in zip(names, table["tied_with_best"], strict=True) if t is True]
    worse = [n for n, t in zip(names, table["tied_with_best"], strict=True) if t is False]
    unknown = [n for n, t in zip(names, table["tied_with_best"], strict=True) if t is None]
    seeds = sorted(set(table["n"][table["n"] > 1]))
    at = f"at {' to '.join(map(str, (seeds[0], seeds[-1]))) if len(seeds) > 1 else seeds[0]} seeds"
    if len(tied) == 1:
        found = f"{tied[0]} is better than every other variant {at} (95 %, Holm-corrected)"
    else:
        found = f"{spoken(tied)} are tied with the best {at} ({tied[0]} leads by mean)"
    parts = [found]
    if worse and len(tied) > 1:
        parts.append(f"{spoken(worse)} {'is' if len(worse) == 1 else 'are'} worse")
    if unknown:
        parts.append(f"{spoken(unknown)} cannot be judged (one seed, or the leader has one)")
    return "; ".join(parts) + "."


def single_seed_verdict(table: pd.DataFrame) -> str:
    """With one seed per variant, how large a lead chance alone gives a sweep of this size,
    and how many seeds would separate the two leaders."""
    k, points = len(table), 100
    lead = expected_lead(k)
    gap = table["val_mean"].iloc[0] - table["val_mean"].iloc[1]
    needed = seeds_to_separate(gap)
    seeds = f"even {MOST_SEEDS} seeds per variant could not tell a lead that small from chance"
    if needed:
        seeds = f"about {needed} seeds per variant would tell a lead that size from chance"
        seeds += f" ({POWER:.0%} power)"
    return (
        f"Each of the {k} variants ran one seed, so this ranks single draws. Among {k} equally "
        f"good variants chance alone puts the best about {lead * points:.2f} points above their "
        f"average (seed sd {PUBLISHED_SEED_SD * points:.2f} points, published for the tutorial's "
        f"network). Here {table['label'].iloc[0]} leads the next by {gap * points:.2f} "
        f"points; {seeds}. Add seeds with hydra.sweeper.seeds=N (or seed=1,2,3)."
    )


def spoken(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def curve_bands(curves: dict[str, list[list[float]]]) -> dict[str, tuple]:
    """Per variant (by name), its seeds' validation curves as (mean, low, high, seeds) per epoch:
    the mean and 95 % t-interval of the seeds that reached that epoch."""
    bands = {}
    for name, runs in curves.items():
        epochs = max(map(len, runs), default=0)
        columns = [np.array([run[e] for run in runs if len(run) > e]) for e in range(epochs)]
        mean = np.array([values.mean() for values in columns])
        low, high = (np.array(bound) for bound in zip(*map(interval, columns), strict=True))
        bands[name] = (mean, low, high, len(runs))
    return bands
