"""The exceptions that cross layers: a mistake the user can fix, and a trial the pruner stopped.

A leaf, like mnist_exp.names: training raises these without knowing who catches them, and the
commands print a `UserError` as one line (Hydra's own way for its CompactHydraException).
"""

from __future__ import annotations

from mnist_exp.names import PRUNED_TAG


class UserError(Exception):
    """Something the user can fix (a value, a file, a server): one line that names it and the
    fix, never a traceback. Raised before anything is recorded wherever it can be."""


class PrunedTrial(Exception):
    """The pruner stopped this trial after `epoch` epochs (its run is KILLED, its curves kept)."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch

    def __reduce__(self):  # crosses from a joblib worker to the sweeper intact
        return type(self), (self.epoch,)

    @property
    def run_tags(self) -> dict[str, str]:
        return {PRUNED_TAG: str(self.epoch)}
