"""Keras's backend for this process: set from train.backend before Keras loads, and checked after.

Keras 3 reads KERAS_BACKEND once, at its first import, and a process cannot switch afterwards.
So the entry points (run.main, experiment.run_experiment) call `use_backend` right after the
config is validated and before anything imports Keras; a process that already has Keras with
another backend (a notebook, a sweep that mixes backends) gets one clear error instead of a
silent run on the wrong backend. Knows nothing of MLflow.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from hydra.errors import CompactHydraException

TENSORFLOW = "tensorflow"
JAX = "jax"


class BackendAlreadyLoaded(CompactHydraException):
    """Keras was imported with another backend than the config asks for."""


def loaded_backend() -> str | None:
    """The backend of the Keras this process has imported, or None before its first import."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


def use_backend(wanted: str) -> None:
    """Make `wanted` the backend Keras loads with, or fail if Keras already runs another one.

    The config decides, not an inherited KERAS_BACKEND (or ~/.keras/keras.json): the run's
    train.backend param then always says what trained it.
    """
    loaded = loaded_backend()
    if loaded is None:
        os.environ["KERAS_BACKEND"] = wanted
        if wanted == JAX:
            use_jax_compilation_cache()
        return
    if loaded != wanted:
        raise BackendAlreadyLoaded(
            f"train.backend={wanted}: this process already runs Keras on {loaded}, and Keras "
            "cannot switch backends in a process. Run each backend in its own process: a "
            "separate command (or one sweep per backend), or restart the notebook's kernel."
        )


def use_jax_compilation_cache() -> None:
    """JAX's persistent compilation cache, in .cache/jax of the project, unless the user set one.

    XLA compiles a new model's train, test and predict steps afresh in every process (about 2 s
    of a 10-epoch dense fit on 2 cores); from the cache, every later run and sweep job of the
    same shapes loads them instead. JAX reads these variables when it is first imported, and
    by default caches only what took a second or more to compile, which none of these steps do.
    """
    from mnist_exp.config import PROJECT_ROOT

    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(PROJECT_ROOT / ".cache" / "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def is_jax() -> bool:
    """Whether the Keras of this process runs on JAX (once it is loaded)."""
    return loaded_backend() == JAX


@contextlib.contextmanager
def tensorflow_left_unloaded() -> Iterator[None]:
    """Keras imports TensorFlow whenever it is installed, on any backend, to seed it
    (keras.utils.set_random_seed) and to look for tf.TensorShape when it saves a model: about
    10 CPU-seconds in a JAX process that never uses it. In a process that has not loaded it and
    runs Keras on another backend, `import tensorflow` fails at once inside this block (a None in
    sys.modules), and Keras carries on as it does without TensorFlow installed."""
    if TENSORFLOW in (loaded_backend(), None) or "tensorflow" in sys.modules:
        yield
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if "tensorflow" in sys.modules and sys.modules["tensorflow"] is None:
            del sys.modules["tensorflow"]
