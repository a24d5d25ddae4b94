"""A fit's history: the epoch of its best validation accuracy."""

from __future__ import annotations

import math

from mnist_exp.training.history import best_epoch


def test_best_epoch_is_the_first_epoch_with_the_best_validation_accuracy():
    assert best_epoch([0.91, 0.95, 0.94, 0.95]) == 2  # counted from 1, as Keras prints them
    assert best_epoch([0.97]) == 1
    assert best_epoch([math.nan, 0.5, math.nan]) == 2
    assert best_epoch([]) is None and best_epoch([math.nan]) is None
