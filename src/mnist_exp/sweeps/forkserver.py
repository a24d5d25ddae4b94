"""hydra/launcher=together's workers forked from one process that has loaded, once, what every
job needs: Keras on JAX, the sweep's MNIST, MLflow's client and matplotlib.

Each worker used to load these itself: on 2 cores, two workers importing Keras and JAX beside
the launching process took 3.2 s before the first job could start. Python's own forkserver
(multiprocessing's "forkserver" start method, with `set_forkserver_preload`) does it once, in a
fresh process started as the sweep starts (a Hydra callback, before the parent run is opened),
while the launching process opens the store and composes the jobs; a worker is then a fork of
it that starts at once, its arrays shared with the others until written (they are read-only).

Only for JAX: it loads without starting a thread, so forking after it is safe as long as
nothing has computed yet (XLA's thread pool is sized in each worker, from NPROC, at its first
computation). TensorFlow starts threads of its own as it loads, and its jobs (the CNN) are long
enough for their start-up not to count: they keep workers that load Keras themselves.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
from multiprocessing import forkserver
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_exp.config import validate
from mnist_exp.training.backend import JAX

# The preload the forkserver is given: what it is to load, as JSON (forkserver_preload.py).
PRELOAD_ENV = "MNIST_EXP_FORKSERVER_PRELOAD"
PRELOAD_MODULE = "mnist_exp.sweeps.forkserver_preload"

_started_for: str | None = None  # the backend the running forkserver loaded


class StartForkserver(Callback):
    """Hydra callback: at the start of a sweep on hydra/launcher=together, the forkserver its
    workers will come from starts loading, while the sweep opens its parent run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if launcher.endswith(".TogetherLauncher") and not config.get("dry_run"):
            start(config)


def start(config: DictConfig) -> None:
    """Start the forkserver, loading what `config`'s jobs need, if it can serve them (JAX)."""
    global _started_for
    if _started_for is not None or "forkserver" not in multiprocessing.get_all_start_methods():
        return
    try:
        typed = validate(copy.deepcopy(config))  # validate resolves `auto` in what it is given
    except Exception:  # the jobs' own checks say what is wrong, in their words
        return
    if typed.train.backend.value != JAX:
        return
    data = typed.data
    preload = {"cache_dir": data.cache_dir, "sources": [s.value for s in data.sources],
               "limit_train": data.limit_train, "limit_test": data.limit_test}  # fmt: skip
    # The forkserver takes this process's environment as it starts; ours stays as it was.
    before = {name: os.environ.get(name) for name in (PRELOAD_ENV, "KERAS_BACKEND")}
    os.environ[PRELOAD_ENV], os.environ["KERAS_BACKEND"] = json.dumps(preload), JAX
    try:
        multiprocessing.get_context("forkserver").set_forkserver_preload([PRELOAD_MODULE])
        forkserver.ensure_running()
        _started_for = JAX
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def context(backend: str) -> Any:
    """The forkserver's multiprocessing context if it has loaded Keras on `backend`, else None."""
    return multiprocessing.get_context("forkserver") if _started_for == backend else None
