"""`python -m mnist_exp.data`: fetch MNIST into the cache, verify it, and say from where."""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from mnist_exp.composition import default_config
from mnist_exp.config import NUM_CLASSES
from mnist_exp.training.mnist import SOURCES, DataError, load_mnist


def main(argv: list[str] | None = None) -> int:
    """`python -m mnist_exp.data`: fetch and verify MNIST into the cache, and say from where."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    # The run's own default (conf/data/mnist.yaml: MNIST_EXP_DATA_DIR, else <repo>/data).
    parser.add_argument("--cache-dir", default=default_config().data.cache_dir)
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        mnist = load_mnist(args.cache_dir, args.sources)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    counts = " ".join(str(c) for c in np.bincount(mnist.y_train, minlength=NUM_CLASSES))
    print(
        f"MNIST ok (source: {mnist.source}): train {mnist.x_train.shape}, test "
        f"{mnist.x_test.shape}, all four sha256 match; train class counts {counts}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
