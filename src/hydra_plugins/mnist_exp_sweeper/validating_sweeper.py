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

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore

from mnist_exp.sweep import validate_sweep_job


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
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        for overrides in batch:
            validate_sweep_job(self.hydra_context.config_loader, self.config, list(overrides))
