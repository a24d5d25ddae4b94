"""Keras's backend for this process: set from train.backend before Keras loads, and checked after.

Keras 3 reads KERAS_BACKEND once, at its first import, and a process cannot switch afterwards.
So the entry points (run.main, experiment.run_experiment) call `use_backend` right after the
config is validated and before anything imports Keras; a process that already has Keras with
another backend (a notebook, a sweep that mixes backends) gets one clear error instead of a
silent run on the wrong backend. Knows nothing of MLflow.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Iterator

from mnist_exp.config import PROJECT_ROOT
from mnist_exp.errors import UserError
from mnist_exp.training.native_logs import library_logs_wanted, native_chatter_filtered

TENSORFLOW = "tensorflow"
JAX = "jax"


class BackendAlreadyLoaded(UserError):
    """Keras was imported with another backend than the config asks for."""


def loaded_backend() -> str | None:
    """The backend of the Keras this process has imported, or None before its first import."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


def use_backend(wanted: str, threads: int | None = None) -> None:
    """Make `wanted` the backend Keras loads with, or fail if Keras already runs another one.

    The config decides, not an inherited KERAS_BACKEND (or ~/.keras/keras.json): the run's
    train.backend param then always says what trained it. On JAX, `threads` sizes XLA's thread
    pool (None: one thread per core), which can only be done before JAX first computes; on
    TensorFlow, train.limit_threads applies them later.
    """
    loaded = loaded_backend()
    if loaded is None:
        os.environ["KERAS_BACKEND"] = wanted
        if wanted == JAX:
            use_jax_compilation_cache()
            set_jax_threads(threads)
        return
    if loaded != wanted:
        raise BackendAlreadyLoaded(
            f"train.backend={wanted}: this process already runs Keras on {loaded}, and Keras "
            "cannot switch backends in a process. Run each backend in its own process: a "
            "separate command (or one sweep per backend), or restart the notebook's kernel."
        )


def load_keras() -> None:
    """Import Keras on the backend use_backend chose, if this process has not yet, without the
    modules it and TensorFlow import only in case a program wants them (LEFT_OUT_AT_LOAD)."""
    if "keras" in sys.modules:
        return
    backend = os.environ.get("KERAS_BACKEND", TENSORFLOW)
    with native_chatter_filtered(), left_unloaded(*LEFT_OUT_AT_LOAD.get(backend, ())):
        import keras  # noqa: F401

        if backend == TENSORFLOW:
            import tensorflow as tf

            # Its first look for devices prints the "failed call to cuInit" line: here, inside
            # the filter. It sets nothing up, so threads can still be set afterwards.
            tf.config.list_physical_devices()
            if not library_logs_wanted():
                # "5 out of the last 5 calls ... triggered tf.function retracing", once a job:
                # each job of a sweep compiles its own model's steps, as it should.
                tf.get_logger().setLevel("ERROR")
        elif not library_logs_wanted():
            # "Unable to initialize backend 'tpu'", at INFO on every machine without one.
            logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    # Keras's, its backend's and MLflow's half a million objects live as long as the process:
    # out of the collector's sight, a full collection stops taking 0.3 s, and so does the one
    # at exit (1.8 s in a process that had imported TensorFlow).
    gc.freeze()


def set_jax_threads(threads: int | None) -> None:
    """Size XLA's thread pool (None: leave it at one thread per core, or as the user set it).
    It takes effect only if JAX has not computed yet in this process: JAX may be imported, as
    in a worker that loaded Keras before it knew its jobs (sweeps.together)."""
    if threads:
        # XLA's CPU client sizes its pool from NPROC when it starts (DefaultThreadPoolSize in
        # xla/pjrt); XLA_FLAGS' intra_op_parallelism_threads no longer does (jaxlib 0.10).
        os.environ["NPROC"] = str(threads)


def jax_threads() -> int | None:
    """The size of XLA's thread pool as set for this process (None: one thread per core)."""
    setting = os.environ.get("NPROC", "")
    return int(setting) if setting.isdigit() and int(setting) > 0 else None


def use_jax_compilation_cache() -> None:
    """JAX's persistent compilation cache, in .cache/jax of the project, unless the user set one.

    XLA compiles a new model's train, test and predict steps afresh in every process (about 2 s
    of a 10-epoch dense fit on 2 cores); from the cache, every later run and sweep job of the
    same shapes loads them instead. JAX reads these variables when it is first imported, and
    by default caches only what took a second or more to compile, which none of these steps do.
    """
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(PROJECT_ROOT / ".cache" / "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def is_jax() -> bool:
    """Whether the Keras of this process runs on JAX (once it is loaded)."""
    return loaded_backend() == JAX


# Imported at Keras's load in case a program wants them, and never by a run: Keras imports
# scikit-learn (which MLflow installs) for keras.wrappers' scikit-learn estimators, and
# TensorFlow's tf.lite imports JAX (our jax extra) to convert JAX functions. Each import is in a
# try that reads a failed import as "not installed": with them left out, those two features are
# off in this process (a later `import sklearn` works as usual). Together 1.5 s of the 6.5 s that
# TensorFlow's import took on an idle 2-core Zen 3 (python -X importtime); in bench/RESULTS.md.
LEFT_OUT_AT_LOAD = {TENSORFLOW: ("sklearn", "jax"), JAX: ("sklearn",)}


@contextlib.contextmanager
def left_unloaded(*names: str) -> Iterator[None]:
    """Inside this block, `import name` fails at once (a None in sys.modules) for each of `names`
    this process has not loaded yet; afterwards they import as usual."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def tensorflow_left_unloaded() -> contextlib.AbstractContextManager[None]:
    """Keras imports TensorFlow whenever it is installed, on any backend, to seed it
    (keras.utils.set_random_seed) and to look for tf.TensorShape when it saves a model: about
    10 CPU-seconds in a JAX process that never uses it. On another backend than TensorFlow,
    Keras carries on inside this block as it does without TensorFlow installed."""
    if TENSORFLOW in (loaded_backend(), None):
        return contextlib.nullcontext()
    return left_unloaded(TENSORFLOW)
