"""Imported by hydra/launcher=together's forkserver (sweeps.forkserver), and by nothing else:
what every worker needs, loaded once before any is forked. Silently: each job says itself what
it loaded, and whatever fails here is left for the jobs to meet and report."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path


def _load() -> None:
    from mnist_exp.sweeps.forkserver import PRELOAD_ENV
    from mnist_exp.training import backend, data
    from mnist_exp.training.mnist import CACHE_FILE

    wanted = json.loads(os.environ.pop(PRELOAD_ENV))
    backend.use_backend(backend.JAX)
    backend.load_keras()
    # A job's modules that import Keras, and what its first model and figures would load.
    from matplotlib.backends import backend_agg  # noqa: F401

    from mnist_exp.tracking import outcome, tracked_model
    from mnist_exp.training import models, plots, train  # noqa: F401

    tracked_model.warm_up()
    if (Path(wanted["cache_dir"]).expanduser() / CACHE_FILE).is_file():
        mnist, _ = data.load_prepared(wanted["cache_dir"], tuple(wanted["sources"]),
                                      wanted["limit_train"], wanted["limit_test"])  # fmt: skip
        # The figure every job logs the same (matplotlib only: nothing computes on JAX here).
        outcome.samples_png(mnist.x_train[: plots.SAMPLES], mnist.y_train[: plots.SAMPLES])


logging.disable(logging.INFO)
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _load()
except Exception:  # noqa: S110 - the jobs load it again and report
    pass
finally:
    logging.disable(logging.NOTSET)
