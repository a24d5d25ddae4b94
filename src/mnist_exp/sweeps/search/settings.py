"""What `hydra.sweeper.*` takes for a search: its samplers, pruners, confirmation and the keys
the sweeper hands each job, registered in Hydra's ConfigStore (hydra/sweeper=search).

No `from __future__ import annotations`: Hydra reads these dataclasses' annotations as types.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None  # the same seed proposes the same trials
    n_startup_trials: int = 10  # random trials before TPE models the results
    multivariate: bool = False
    # With trials in parallel: pretend running trials did badly, so two slots differ.
    constant_liar: bool = False


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    # Trials trained to the end before any is pruned: the median must stand on something.
    n_startup_trials: int = 5
    n_warmup_steps: int = 0  # epochs every trial trains before it may be pruned (at least 1)
    interval_steps: int = 1
    n_min_trials: int = 1  # trials that must have reached an epoch before it can prune there


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1  # epochs a trial trains at the least
    max_resource: Any = "auto"  # auto: the epochs of the first trial that trains to the end
    reduction_factor: int = 3


@dataclass
class SuccessiveHalvingPrunerConf:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = 1  # epochs before the first cut ("auto": from the first finished trial)
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0


@dataclass
class ThresholdPrunerConf:
    _target_: str = "optuna.pruners.ThresholdPruner"
    lower: float | None = 0.2  # a trial whose val_accuracy is below this (2x chance) is pruned
    upper: float | None = None
    n_warmup_steps: int = 0


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class ConfirmConf:
    top_k: int = 0  # re-run this many of the best trials once the trials are done; 0: none
    seeds: int = 3  # on this many fresh seeds each, and name the winner by mean (search.confirm)


@dataclass
class SearchSweeperConf:
    _target_: str = "hydra_plugins.mnist_exp_sweeper.search_sweeper.SearchSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    n_trials: int = 20  # in the study in all, counting those of earlier runs of the command
    n_jobs: int | None = None  # trials at once; None: what the launcher runs at once
    storage: str | None = None  # None: optuna.db beside the MLflow store (search.study)
    study_name: str | None = None  # None: named after the search, so a rerun continues it
    params: dict[str, str] | None = None  # key: Hydra sweep syntax (interval, choice, range)
    custom_search_space: str | None = None  # a function(cfg, trial) for conditional params
    trial_number: int | None = None  # set by the sweeper for each job: the trial it trains
    confirm: ConfirmConf = field(default_factory=ConfirmConf)
    confirm_of: int | None = None  # set by the sweeper for a confirmation job: the trial it repeats


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="search", node=SearchSweeperConf, provider="mnist_exp")
for _name, _node in {"tpe": TPESamplerConf, "random": RandomSamplerConf}.items():
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="mnist_exp")
for _name, _node in {"median": MedianPrunerConf, "hyperband": HyperbandPrunerConf,
                     "successive_halving": SuccessiveHalvingPrunerConf,
                     "threshold": ThresholdPrunerConf, "none": NopPrunerConf}.items():  # fmt: skip
    _store.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="mnist_exp")
