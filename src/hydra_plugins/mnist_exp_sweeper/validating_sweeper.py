"""Hydra's basic sweeper, but every job's config is composed *and* range-checked up front.

The basic sweeper already composes each job before launching it, which catches type errors and
unknown keys. It does not know our ranges (`model.dropout=1.5`), so without this a bad value in
the last job of a sweep would surface only after the others had trained.

Hydra only loads plugins from the `hydra_plugins` package, hence this module's home. No
`from __future__ import annotations`: Hydra execs this module outside sys.modules, where
dataclasses cannot resolve string annotations.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore

from mnist_exp.config import ConfigError, validate
from mnist_exp.sweep import check_one_backend, check_sweep_job


@dataclass
class ValidatingSweeperConf:
    _target_: str = "hydra_plugins.mnist_exp_sweeper.validating_sweeper.ValidatingSweeper"
    # None: one batch, so every job is validated before the first one runs.
    max_batch_size: int | None = None
    params: dict[str, str] | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="validating", node=ValidatingSweeperConf, provider="mnist_exp"
)


class ValidatingSweeper(BasicSweeper):
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
        backends = set()
        for overrides in batch:
            job_cfg = loader.load_sweep_config(self.config, list(overrides))
            try:
                typed = validate(job_cfg)
                check_sweep_job(typed)
            except ConfigError as err:
                raise ConfigError(f"Sweep job [{' '.join(overrides)}]: {err}") from None
            backends.add(typed.train.backend.value)
            self._composed[tuple(overrides)] = job_cfg
        check_one_backend(backends)
