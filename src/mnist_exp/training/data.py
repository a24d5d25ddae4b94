"""The arrays a model trains on: the tutorial's preprocessing, prepared once per process."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_exp.config import NUM_CLASSES
from mnist_exp.training.mnist import CACHE_FILE, Mnist, load_mnist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """What the model sees: float32 images in [0, 1] with a channel axis, one-hot labels."""

    x_train: np.ndarray
    y_train_cat: np.ndarray
    x_test: np.ndarray
    y_test_cat: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def prepare(mnist: Mnist, limit_train: int | None = None, limit_test: int | None = None):
    """The tutorial's preprocessing: x / 255 and one-hot labels, on the first N images."""
    from keras.utils import to_categorical

    def images(x: np.ndarray) -> np.ndarray:
        scaled = x.astype(np.float32)
        scaled /= 255.0  # in place: one 188 MB array for the training set, not two
        return scaled[..., np.newaxis]

    y_train, y_test = mnist.y_train[:limit_train], mnist.y_test[:limit_test]
    return Prepared(
        x_train=images(mnist.x_train[:limit_train]),
        y_train_cat=to_categorical(y_train, NUM_CLASSES).astype(np.float32),
        x_test=images(mnist.x_test[:limit_test]),
        y_test_cat=to_categorical(y_test, NUM_CLASSES).astype(np.float32),
        y_train=y_train,
        y_test=y_test,
    )


# The last data config's arrays, for the next job in this process: one data set in memory.
_prepared: dict[tuple, tuple[Mnist, Prepared]] = {}


def load_prepared(
    cache_dir: str, sources: tuple[str, ...], limit_train: int | None, limit_test: int | None
) -> tuple[Mnist, Prepared]:
    """`load_mnist` and `prepare`, done once per process for each data config: the jobs of a
    sweep share the arrays. They are made read-only, so no job can change another's data."""
    key = (str(Path(cache_dir).expanduser().resolve()), sources, limit_train, limit_test)
    if key in _prepared:
        mnist, prepared = _prepared[key]
        # Every run's log still says where its data came from.
        log.info("MNIST loaded from %s (%s), prepared once in this process", mnist.source,
                 Path(key[0]) / CACHE_FILE)  # fmt: skip
        return mnist, prepared
    mnist = load_mnist(cache_dir, sources)
    prepared = prepare(mnist, limit_train, limit_test)
    for arrays in (mnist, prepared):
        for array in vars(arrays).values():
            if isinstance(array, np.ndarray):
                array.flags.writeable = False
    _prepared.clear()
    _prepared[key] = (mnist, prepared)
    return mnist, prepared
