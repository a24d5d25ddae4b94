"""A search's confirmation: its K best trials trained again on S fresh seeds, and the winner
named by its mean over them. A trial's value is one seed's draw, and the best of many draws is
lucky as well as good; fresh seeds measure each leader without that luck.

`hydra.sweeper.confirm.top_k=K hydra.sweeper.confirm.seeds=S`. Each re-run is an ordinary job of
the search's parent run, tagged `confirm` (the trial it repeats), so a search interrupted during
its confirmation skips the re-runs that finished when run again and resumes the one cut short.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from mnist_exp.identity import SEED
from mnist_exp.names import CONFIRM_TAG
from mnist_exp.sweeps.search.space import as_overrides

log = logging.getLogger(__name__)


def leaders(study: Any, top_k: int) -> list[Any]:
    """The `top_k` completed trials with the best values, best first."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: t.value, reverse=True)[:top_k]


def fresh_seeds(trial_seed: int, count: int) -> list[int]:
    """Seeds no trial trained on: the trials all ran `trial_seed`."""
    return [trial_seed + 1 + i for i in range(count)]


def jobs(trials: list[Any], fixed: list[str], seeds: list[int]) -> list[tuple[int, list[str]]]:
    """(trial number, overrides) of every re-run: each leader's params on each fresh seed."""
    return [
        (
            trial.number,
            [
                *fixed,
                *as_overrides(trial.params),
                f"{SEED}={seed}",
                f"hydra.sweeper.confirm_of={trial.number}",
            ],
        )  # fmt: skip
        for trial in trials
        for seed in seeds
    ]


def job_tags(sweeper: Any) -> dict[str, str]:
    """A confirmation job's run tag: which trial it repeats."""
    number = sweeper.get("confirm_of")
    return {} if number is None else {CONFIRM_TAG: str(number)}


def verdict(trials: list[Any], values: dict[int, list[float]]) -> dict[str, Any]:
    """The winner by mean over the fresh seeds, with its interval; each leader's summary; and
    whether the winner is the trial that was best on its single seed."""
    # Here, not at the top: every run imports this module (run.py, for job_tags), and scipy,
    # pandas and statsmodels cost 0.85 s of its start-up.
    from mnist_exp.sweeps import variants

    summaries = []
    for trial in trials:
        scored = np.array([v for v in values.get(trial.number, []) if not math.isnan(v)])
        low, high = variants.interval(scored)
        mean = float(scored.mean()) if len(scored) else math.nan
        summaries.append({"trial": trial.number, "single_run": trial.value, "n": len(scored),
                          "val_mean": mean, "val_ci_low": low, "val_ci_high": high,
                          "params": dict(trial.params)})  # fmt: skip
    ranked = sorted(summaries, key=lambda s: -math.inf if math.isnan(s["val_mean"]) else
                    s["val_mean"], reverse=True)  # fmt: skip
    winner = ranked[0]
    return {"winner": winner, "leaders": ranked, "same_as_single_run_best":
            winner["trial"] == trials[0].number}  # fmt: skip


def log_to_parent(parent_run_id: str, found: dict[str, Any]) -> None:
    """The confirmed winner into the search's parent run: confirmed.n, .val_mean, .val_ci_low,
    .val_ci_high, its params as confirmed.<key>, and every leader in confirmation.yaml."""
    import yaml
    from mlflow import MlflowClient

    client = MlflowClient()
    winner = found["winner"]
    for key in ("n", "val_mean", "val_ci_low", "val_ci_high"):
        if not (isinstance(winner[key], float) and math.isnan(winner[key])):
            client.log_metric(parent_run_id, f"confirmed.{key}", winner[key])
    client.set_tag(parent_run_id, "confirmed.trial", str(winner["trial"]))
    for name, value in winner["params"].items():
        client.log_param(parent_run_id, f"confirmed.{name}", value)
    client.log_text(parent_run_id, yaml.safe_dump(found, sort_keys=False), "confirmation.yaml")


def described(found: dict[str, Any], seeds: int) -> str:
    """One paragraph for the console: the winner, and how the single-run best fared."""
    w = found["winner"]
    interval = (f" [{w['val_ci_low']:.4f}, {w['val_ci_high']:.4f}]"
                if not math.isnan(w["val_ci_low"]) else "")  # fmt: skip
    text = (
        f"Confirmed on {seeds} fresh seeds: trial {w['trial']} wins, val_accuracy mean "
        f"{w['val_mean']:.4f}{interval} (it scored {w['single_run']:.4f} on its own seed)"
    )
    if found["same_as_single_run_best"]:
        return text + "; it was also the best single run."
    best = max(found["leaders"], key=lambda s: s["single_run"])
    return (
        text + f"; the best single run, trial {best['trial']} ({best['single_run']:.4f}), "
        f"averaged {best['val_mean']:.4f} on the fresh seeds."
    )
