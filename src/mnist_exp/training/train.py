"""Compile, fit, evaluate and predict. Knows Keras, not MLflow: callbacks come from the caller."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import keras
import numpy as np

from mnist_exp.choices import LRSchedule, Precision, Xla
from mnist_exp.config import NUM_CLASSES, TrainConfig, TTAConfig
from mnist_exp.errors import UserError
from mnist_exp.training import backend
from mnist_exp.training.callbacks import EpochTimer, LearningRateInLogs, StopIfInterrupted
from mnist_exp.training.checkpoint import Checkpoint
from mnist_exp.training.data import Prepared
from mnist_exp.training.hardware import precision_here
from mnist_exp.training.jax_steps import scan_train_steps
from mnist_exp.training.models import augmentation


@dataclass(frozen=True)
class FitResult:
    history: dict[str, list[float]]  # per epoch, all of them: loss, accuracy, val_loss, ...
    seconds: float  # of fitting, the epochs before a resume included
    resumed_from: int = 0  # epochs a checkpoint already held when this fit began


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; Keras's TerminateOnNaN stopped the fit. Hydra prints
    it as one message, without a traceback (the run's error.txt keeps that)."""


def limit_threads(threads: int | None) -> int | None:
    """The threads this process's ops run on (None: one per core). TensorFlow takes `threads`
    here, before its first op only: a process that runs several jobs (a joblib worker) keeps the
    first job's setting, so every job of one sweep asks for the same number. JAX's were set as
    it loaded (backend.use_backend)."""
    if keras.backend.backend() != "tensorflow":
        return backend.jax_threads()
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    return threads


def set_precision(precision: Precision) -> Precision:
    """The dtype policy of the layers built after this call (Keras's mixed precision), with
    `auto` resolved for this machine; the policy set."""
    resolved = Precision(precision_here(precision.value))
    keras.mixed_precision.set_global_policy(resolved.value)
    return resolved


def set_seed(seed: int) -> None:
    """Seeds Python, NumPy and the backend, so a config hash means one reproducible run."""
    with backend.tensorflow_left_unloaded():  # a JAX run would import TensorFlow only to seed it
        keras.utils.set_random_seed(seed)


def uses_xla(model: keras.Model, cfg: TrainConfig) -> bool:
    if keras.backend.backend() == "jax":
        # JAX runs through XLA; Keras's jit_compile=False there means op by op in Python, which
        # no setting of ours asks for (Keras's own default on JAX is to compile too).
        return True
    if cfg.xla is Xla.auto:
        # XLA speeds the dense network up but slows convolutions down (bench/RESULTS.md).
        return not any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
    return cfg.xla is Xla.always


def train_samples(images: int, cfg: TrainConfig) -> int:
    """Keras's own split point: the first ceil((1 - split) * n) images train."""
    return math.ceil(images * (1 - cfg.validation_split))


def learning_rate(
    cfg: TrainConfig, train_images: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's learning rate: a number, or for warmup_cosine a schedule over the steps
    of the whole fit (the epoch-wise cosine is a callback instead, see training_callbacks)."""
    if cfg.lr_schedule is not LRSchedule.warmup_cosine:
        return cfg.learning_rate
    total = math.ceil(train_images / cfg.batch_size) * cfg.epochs
    warmup = min(round(cfg.warmup_epochs * math.ceil(train_images / cfg.batch_size)), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total - warmup, warmup_target=cfg.learning_rate, warmup_steps=warmup
    )


def compile_model(model: keras.Model, cfg: TrainConfig, train_images: int) -> None:
    """`train_images`: how many images fit() trains on (a per-step schedule counts its steps)."""
    # A fixed name: Keras would number a process's later optimizers adam_1, adam_2, ..., and a
    # tracker that logs the optimizer's config would show sweep jobs differing by that name.
    optimizer = keras.optimizers.get(
        {
            "class_name": cfg.optimizer.value,
            "config": {
                "learning_rate": learning_rate(cfg, train_images),
                "name": cfg.optimizer.value,
            },
        }
    )
    model.compile(
        optimizer=optimizer,
        # With label_smoothing 0 this is the tutorial's loss="categorical_crossentropy".
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
        # Both change how the same steps are dispatched, not what they compute.
        steps_per_execution=cfg.steps_per_execution,
        jit_compile=uses_xla(model, cfg),
    )
    # On JAX, those steps in one XLA loop rather than Keras 3.15's Python loop (same steps).
    scan_train_steps(model)


def training_callbacks(cfg: TrainConfig) -> list[keras.callbacks.Callback]:
    """The callbacks the train config asks for: learning-rate schedule, early stopping."""
    callbacks = []
    if cfg.lr_schedule is LRSchedule.cosine:
        cosine = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=cfg.epochs)
        # Per epoch rather than per batch, so the rate lands in the logs as `learning_rate`.
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch: float(cosine(epoch))))
    elif cfg.lr_schedule is LRSchedule.warmup_cosine:
        callbacks.append(LearningRateInLogs())
    if cfg.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                mode="max",
                patience=cfg.early_stopping_patience,
                restore_best_weights=cfg.restore_best_weights,
                verbose=1,  # says in the run log which epoch it stopped at and which it kept
            )
        )
    return callbacks


def fit(
    model: keras.Model,
    data: Prepared,
    cfg: TrainConfig,
    callbacks: list | None = None,
    checkpoint: Checkpoint | None = None,
) -> FitResult:
    """model.fit as the tutorial calls it; the config's callbacks run before the caller's, so
    those (e.g. a tracker) see the learning rate in the epoch's logs.

    With a checkpoint, every epoch is kept in it and a fit that finds one continues from its
    last epoch (or, if fit() had already returned, takes its weights and trains nothing).
    """
    if checkpoint is not None and checkpoint.is_fitted():
        history = checkpoint.load_fitted(model)
        epochs_done = len(history.get("loss", []))
        return FitResult(history, sum(history.get("epoch_seconds", [])), epochs_done)
    # Before the callbacks are made: the keeper continues the history the checkpoint holds.
    resumed_from = checkpoint.restore(model) if checkpoint is not None else 0
    # A progress bar in a terminal; one line per epoch in logs and CI, where bars become noise.
    verbose = 1 if sys.stdout.isatty() else 2
    training_images = train_samples(len(data.x_train), cfg)
    configured = training_callbacks(cfg)
    stopper = next((c for c in configured if isinstance(c, keras.callbacks.EarlyStopping)), None)
    kept = checkpoint.callbacks(stopper, resumed_from) if checkpoint is not None else []
    start = time.perf_counter()
    history = model.fit(
        data.x_train,
        data.y_train_cat,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        # Keras numbers the epochs on from here, so the schedules and the trackers' steps go on.
        initial_epoch=resumed_from,
        validation_split=cfg.validation_split,
        validation_batch_size=cfg.validation_batch_size,
        callbacks=[
            StopIfInterrupted(),
            EpochTimer(training_images),
            # Stops at the first NaN batch rather than training on garbage; we raise below.
            keras.callbacks.TerminateOnNaN(),
            *configured,
            # After the config's callbacks, so early stopping's verdict on an epoch is kept (and
            # its state, restored by the keeper, is not reset by its own on_train_begin).
            *kept,
            *(callbacks or []),
        ],
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    losses = history.history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        if checkpoint is not None:
            checkpoint.remove()  # its last epoch is NaN weights: nothing to resume from
        raise TrainingDiverged(
            f"the training loss became {losses[-1]} in epoch {len(losses)} and training stopped "
            f"(train.optimizer={cfg.optimizer.value}, train.learning_rate={cfg.learning_rate}); "
            "a lower train.learning_rate usually fixes it"
        )
    if not kept:
        return FitResult({k: [float(v) for v in vs] for k, vs in history.history.items()}, seconds)
    keeper = kept[0]
    checkpoint.save_fitted(model, keeper.history)
    before = sum(keeper.history.get("epoch_seconds", [])[: keeper.resumed_from])
    return FitResult(keeper.history, before + seconds, keeper.resumed_from)


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Probabilities, calling the model on batches: predict() traces a function for every new
    model, which in a sweep of small models took longer than the pass itself."""
    batches = [
        keras.ops.convert_to_numpy(model(images[start : start + 1024], training=False))
        for start in range(0, len(images), 1024)
    ]
    return np.concatenate(batches).astype(np.float32)


def evaluate(
    model: keras.Model, data: Prepared, tta: TTAConfig | None = None
) -> tuple[dict[str, float], np.ndarray]:
    """Test loss and accuracy, and the per-image probabilities they come from.

    One pass over the test set (model.evaluate() and then predict() would run it twice); the
    loss and accuracy are Keras's own, as compile() uses them. With test-time augmentation the
    probabilities are the mean over each image and `tta.copies` randomly transformed copies,
    and test_accuracy_plain / test_loss_plain are the image's own.
    """

    def scores(probabilities: np.ndarray, suffix: str = "") -> dict[str, float]:
        loss = keras.losses.categorical_crossentropy(data.y_test_cat, probabilities)
        correct = keras.metrics.categorical_accuracy(data.y_test_cat, probabilities)
        return {f"test_loss{suffix}": float(np.mean(loss)),
                f"test_accuracy{suffix}": float(np.mean(correct))}  # fmt: skip

    plain = predict(model, data.x_test)
    if tta is None or not tta.copies:
        return scores(plain), plain
    transform = keras.Sequential(augmentation(tta))
    total = plain.copy()
    for _ in range(tta.copies):
        total += predict(model, keras.ops.convert_to_numpy(transform(data.x_test, training=True)))
    probabilities = total / (tta.copies + 1)
    return {**scores(probabilities), **scores(plain, "_plain")}, probabilities


def confusion_matrix(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """counts[true, predicted] over the ten digits."""
    y_pred = probabilities.argmax(axis=1)
    pairs = np.bincount(y_true.astype(int) * NUM_CLASSES + y_pred, minlength=NUM_CLASSES**2)
    return pairs.reshape(NUM_CLASSES, NUM_CLASSES)
