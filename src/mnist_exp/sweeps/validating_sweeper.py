"""Hydra's basic sweeper, but every job's config is composed *and* range-checked up front.

The basic sweeper already composes each job before launching it, which catches type errors and
unknown keys. It does not know our ranges (`model.dropout=1.5`), so without this a bad value in
the last job of a sweep would surface only after the others had trained.

Hydra instantiates plugins only from classes defined in the `hydra_plugins` package:
hydra_plugins/mnist_exp_sweeper declares the class Hydra uses, a subclass of this one.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore

from mnist_exp.sweeps import dry_run, progress
from mnist_exp.sweeps.job import InvalidSweep, validate_sweep, with_seeds

log = logging.getLogger(__name__)


@dataclass
class ValidatingSweeperConf:
    _target_: str = "hydra_plugins.mnist_exp_sweeper.validating_sweeper.ValidatingSweeper"
    # None: one batch, so every job is validated before the first one runs.
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    # Every config of the sweep on seeds 1..N (hydra.sweeper.seeds=N), unless seed is swept
    # already: each variant then has N runs, compared as one (sweeps.variants).
    seeds: int | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="validating", node=ValidatingSweeperConf, provider="mnist_exp"
)


class ValidatingSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None, params: dict | None = None, seeds=None):
        super().__init__(max_batch_size, params)
        self.seeds = seeds

    def sweep(self, arguments: list[str]) -> Any:
        # Here, not in __init__: Hydra prints an error raised while it sweeps as one message.
        if self.seeds is not None and self.seeds < 1:
            raise InvalidSweep(f"hydra.sweeper.seeds={self.seeds}: must be a whole number >= 1")
        results = super().sweep(with_seeds(arguments, self.params, self.seeds))
        if self.config.get("dry_run"):
            log.info("%s", dry_run.total([job.return_value for batch in results for job in batch]))
        return results

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        # The launcher composes each job again, right after we composed it to validate it: it
        # gets ours instead (composing took ~0.3 s a job; bench/RESULTS.md). Each composed
        # config is handed out once, so the launcher's changes to it go nowhere else.
        loader = hydra_context.config_loader
        compose = loader.load_sweep_config
        self._composed: dict[tuple[str, ...], Any] = {}

        def load_sweep_config(master_config: Any, sweep_overrides: list[str]) -> Any:
            composed = self._composed.pop(tuple(sweep_overrides), None)
            return composed if composed is not None else compose(master_config, sweep_overrides)

        loader.load_sweep_config = load_sweep_config

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        loader = self.hydra_context.config_loader
        composed = validate_sweep(loader, self.config, batch)
        self._composed.update(composed)
        progress.sweep_has(sum(map(len, self.overrides)), [*map(progress.work, composed.values())])
