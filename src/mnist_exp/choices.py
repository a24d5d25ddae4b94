"""The values a config key may take: Hydra checks a choice against these as it composes, and
the dataclasses in mnist_exp.config use them as their types. Also what `train.backend=auto`
means on this installation, which `validate` resolves before a run is named or hashed.
"""

from __future__ import annotations

import enum
import importlib.util
import sys


class Source(enum.Enum):
    cache = "cache"
    keras = "keras"
    mirror = "mirror"


class Activation(enum.Enum):
    relu = "relu"
    gelu = "gelu"
    tanh = "tanh"
    sigmoid = "sigmoid"
    elu = "elu"


class Optimizer(enum.Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    rmsprop = "rmsprop"


class Xla(enum.Enum):
    auto = "auto"  # XLA for dense models only, where it pays (bench/RESULTS.md)
    always = "always"
    never = "never"


class Precision(enum.Enum):
    float32 = "float32"
    # bfloat16 compute, float32 weights (Keras mixed precision): faster only on hardware with
    # native bf16 (AVX512_BF16 or AMX on x86), much slower without (bench/RESULTS.md).
    mixed_bfloat16 = "mixed_bfloat16"
    # mixed_bfloat16 where the hardware runs bf16 natively, float32 elsewhere (training.hardware);
    # each run tags and prints what it resolved to.
    auto = "auto"


class Backend(enum.Enum):
    # Keras's backend: the tutorial's TensorFlow, or JAX (the `jax` extra; make setup installs
    # it). Same model and math, different speed (bench/RESULTS.md).
    tensorflow = "tensorflow"
    jax = "jax"
    # The fastest for the model's family as measured on AVX2-only and AVX-512 CPUs: JAX for the
    # dense network (2-3x TensorFlow's fit), TensorFlow for the CNN (its oneDNN convolutions);
    # TensorFlow where JAX is not installed. `validate` resolves it, so that the run's param,
    # tag and config hash name the backend that trained it.
    auto = "auto"


# What train.backend=auto picks for each model family when JAX is installed.
FASTEST_BACKEND = {"dense": Backend.jax, "cnn": Backend.tensorflow}


def jax_installed() -> bool:
    return importlib.util.find_spec("jax") is not None


def resolved_backend(family: str) -> Backend:
    """train.backend=auto for a model family on this installation. A process that already runs
    Keras (a notebook, the tests) keeps its backend: Keras cannot switch."""
    keras = sys.modules.get("keras")
    if keras is not None:
        return Backend(keras.backend.backend())
    fastest = FASTEST_BACKEND.get(family, Backend.tensorflow)
    return fastest if jax_installed() else Backend.tensorflow


class Padding(enum.Enum):
    valid = "valid"
    same = "same"


class LRSchedule(enum.Enum):
    constant = "constant"
    cosine = "cosine"  # from learning_rate down to 0 over train.epochs, set once per epoch
    # Up from 0 to learning_rate over train.warmup_epochs, then a cosine down to 0 at the last
    # step, set every step (Keras's CosineDecay with warm-up; "one-cycle" in fast.ai's terms).
    warmup_cosine = "warmup_cosine"
