"""What a fit's per-epoch history says beyond its last epoch: the epoch it did best."""

from __future__ import annotations

import math
from collections.abc import Sequence


def best_epoch(val_accuracy: Sequence[float]) -> int | None:
    """The epoch (1, 2, ... as Keras prints them) of the best validation accuracy, the first
    one on a tie; None with no validation (or only NaN)."""
    scored = [(value, -epoch) for epoch, value in enumerate(val_accuracy, start=1)
              if not math.isnan(value)]  # fmt: skip
    return -max(scored)[1] if scored else None
