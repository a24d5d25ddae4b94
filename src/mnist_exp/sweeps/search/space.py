"""A search's space: Hydra's sweep syntax as Optuna distributions, and its conditional parts.

`params` use Hydra's own override grammar, as hydra-optuna-sweeper's did: `choice(a, b)`,
`range(1, 5)`, `interval(0.0, 0.5)`, `tag(log, interval(1e-4, 1e-2))`. A conditional part (one
parameter that exists only for some value of another) is a Python function, `custom_search_space`.
"""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.utils import get_method
from omegaconf import DictConfig

# A custom space's path before the package had subpackages, and where it is now. A command that
# names the old path still runs; and since a search's study is named after its definition, the
# path included (study.default_study_name), the old path keeps standing for the function there,
# so a study started before the move continues after it.
FORMER_PATHS = {"mnist_exp.search_space.model_family": "mnist_exp.sweeps.search.space.model_family"}

DENSE_WIDTHS = (64, 128, 256, 512)
CNN_HEAD_WIDTHS = (64, 128, 256)


def model_family(cfg: DictConfig, trial: Any) -> None:
    """Dense or CNN, then the width that exists in that family: `model.hidden` is a dense-only
    key and `model.dense` a CNN-only one, so suggesting both would break the other family."""
    if trial.suggest_categorical("model", ["dense", "cnn"]) == "dense":
        trial.suggest_categorical("model.hidden", DENSE_WIDTHS)
    else:
        trial.suggest_categorical("model.dense", CNN_HEAD_WIDTHS)


def parse(overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The swept keys as Optuna distributions, and the fixed overrides every trial shares."""
    space, fixed = {}, []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def distribution(override: Override) -> Any:
    """One swept key's Optuna distribution (what hydra-optuna-sweeper made of the same syntax)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        return CategoricalDistribution(
            list(override.sweep_iterator(transformer=Transformer.encode))
        )
    if isinstance(value, RangeSweep):
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop, step=value.step)
        last = range(int(value.start), int(value.stop), int(value.step))[-1]  # stop is exclusive
        return IntDistribution(int(value.start), last, step=int(value.step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(value.start, value.end, log=log)
    raise ValueError(f"{override.input_line}: a search cannot sample this kind of sweep")


def suggest(trial: Any, space: dict[str, Any]) -> None:
    """Ask the trial for a value of every distribution (they land in `trial.params`)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, FloatDistribution):
            trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)


def extremes(space: dict[str, Any]) -> list[str]:
    """An override for every end of every numeric range and every choice: what the search could
    ever propose for each key, checked before the first trial trains."""
    from optuna.distributions import CategoricalDistribution

    checks = []
    for name, dist in space.items():
        values = (
            dist.choices if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high)
        )
        checks += [f"{name}={value}" for value in values]
    return checks


def as_overrides(params: dict[str, Any]) -> list[str]:
    """A trial's params (`model`, `model.hidden`, ...) as the overrides that compose its job."""
    return [f"{name}={value}" for name, value in params.items()]


def custom_space(path: str) -> Any:
    """The function a `custom_search_space` path names, an old path included."""
    return get_method(FORMER_PATHS.get(path, path))


def study_path(path: str | None) -> str | None:
    """The name a custom space has in a study's definition: the one it had when studies began
    to be named after it."""
    former = {now: before for before, now in FORMER_PATHS.items()}
    return former.get(path, path)
