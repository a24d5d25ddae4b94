"""On Keras's JAX backend: a fit's steps_per_execution batches per call run as one XLA loop.

Keras 3.15's JAX trainer runs steps_per_execution as a Python loop that calls the jitted train
step once per batch; Keras's main branch scans them instead (keras#23527). This does the same
until a release has it: the batches of one call are stacked and `jax.lax.scan` runs the model's
own `train_step(state, data)` (the JAX trainer's documented step) over them, in the same order,
so the weights, metrics and history are the same (tests/test_backend.py compares them); only
the dispatch changes, which made an epoch of the dense baseline faster (bench/RESULTS.md).
"""

from __future__ import annotations

import itertools
import types
from typing import Any


def scan_train_steps(model: Any) -> bool:
    """Make `model.fit` scan each call's batches; False where Keras's own loop is kept (another
    backend, one step per call, no jit, or a distribution or NNX, which this does not cover)."""
    import keras

    if keras.backend.backend() != "jax" or model.steps_per_execution <= 1:
        return False
    if not model.jit_compile or model.run_eagerly or keras.distribution.distribution():
        return False
    if keras.config.is_nnx_enabled():
        return False
    model.make_train_function = types.MethodType(_make_scanned_train_function, model)
    return True


def _make_scanned_train_function(model: Any, force: bool = False) -> None:
    """What Keras's JAX trainer calls before fitting: sets model.train_function(state, iterator)
    -> (logs, state), taking up to steps_per_execution batches from the iterator."""
    if model.train_function is not None and not force:
        return
    import jax
    import jax.numpy as jnp
    import numpy as np

    def scanned(state, batches):
        def step(state, data):
            logs, state = model.train_step(state, data)
            return state, logs

        state, logs = jax.lax.scan(step, state, batches)
        return jax.tree.map(lambda per_step: per_step[-1], logs), state  # the last step's

    one_step = jax.jit(model.train_step, donate_argnums=0)
    many_steps = jax.jit(scanned, donate_argnums=0)

    def stack(*arrays):
        return np.stack(arrays) if isinstance(arrays[0], np.ndarray) else jnp.stack(arrays)

    def train_function(state, iterator):
        batches = list(itertools.islice(iterator, model.steps_per_execution))
        if not batches:
            raise StopIteration  # as Keras's own loop: the epoch iterator ends the epoch on it
        # Batches of one shape scan together; a smaller last batch of the epoch goes alone.
        shapes = [tuple(np.shape(leaf) for leaf in jax.tree.leaves(b)) for b in batches]
        same = next((i for i, s in enumerate(shapes) if s != shapes[0]), len(batches))
        logs = None
        if same > 1:
            logs, state = many_steps(state, jax.tree.map(stack, *batches[:same]))
        for data in batches[same if same > 1 else 0 :]:
            logs, state = one_step(state, data)
        return logs, state

    model.train_function = train_function
