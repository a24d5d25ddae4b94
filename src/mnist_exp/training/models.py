"""build_model(model_cfg) -> an uncompiled keras.Model, for every model family in the schema."""

from __future__ import annotations

import keras
from keras import layers

from mnist_exp.config import (
    IMAGE_SIZE,
    NUM_CLASSES,
    AugmentConfig,
    CNNConfig,
    DenseConfig,
    ModelConfig,
)
from mnist_exp.training.hardware import check_memory_for

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


def softmax_output() -> layers.Layer:
    # In float32 whatever the precision policy: probabilities near 1 need more than bfloat16's
    # 8 bits of mantissa for a sound log loss (Keras's mixed-precision guide does the same).
    return layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")


def dense_weights(cfg: DenseConfig) -> int:
    """The dense network's weights and biases, counted before any is allocated."""
    inputs, hidden, layers_ = IMAGE_SIZE * IMAGE_SIZE, cfg.hidden, cfg.layers
    return (inputs + 1) * hidden + (layers_ - 1) * (hidden + 1) * hidden + (hidden + 1) * 10


def build_dense(cfg: DenseConfig) -> keras.Model:
    """The tutorial's network: Flatten -> Dense(hidden, relu) x layers -> Dense(10, softmax)."""
    # A width with zeros too many must fail this job, not abort the process (XLA does, on JAX).
    check_memory_for(dense_weights(cfg), f"model.hidden={cfg.hidden}")
    stack = [keras.Input(INPUT_SHAPE), layers.Flatten()]
    for _ in range(cfg.layers):
        stack.append(layers.Dense(cfg.hidden, activation=cfg.activation.value))
        if cfg.dropout:
            stack.append(layers.Dropout(cfg.dropout))
    stack.append(softmax_output())
    return keras.Sequential(stack, name="dense")


def augmentation(cfg: AugmentConfig) -> list[layers.Layer]:
    """Keras preprocessing layers: they transform while fitting and pass images through unchanged
    in evaluate/predict. Areas moved in from outside the image are filled black, like MNIST's."""
    stack = []
    if cfg.rotation:
        stack.append(layers.RandomRotation(cfg.rotation / 360, fill_mode="constant"))
    if cfg.translation:
        stack.append(layers.RandomTranslation(cfg.translation, cfg.translation, "constant"))
    if cfg.zoom:
        stack.append(layers.RandomZoom(cfg.zoom, fill_mode="constant"))
    return stack


def activated(layer: type[layers.Layer], *args, cfg: CNNConfig, pool: bool = False,
              **kwargs) -> list[layers.Layer]:  # fmt: skip
    """A Conv2D or Dense with the config's activation. With batch_norm, BatchNormalization goes
    between the two, and the layer loses its bias: batch norm's own shift replaces it. `pool`
    puts a MaxPooling2D straight after the layer, so batch norm and the activation work on a
    quarter of the values (max-pooling commutes with ReLU and the like, so the result is the
    same network up to batch norm's statistics)."""
    pooling = [layers.MaxPooling2D(cfg.pool_size)] if pool else []
    if not cfg.batch_norm and not pool:
        return [layer(*args, activation=cfg.activation.value, **kwargs)]
    if not cfg.batch_norm:
        return [layer(*args, **kwargs), *pooling, layers.Activation(cfg.activation.value)]
    norm = [layers.BatchNormalization(), layers.Activation(cfg.activation.value)]
    return [layer(*args, use_bias=False, **kwargs), *pooling, *norm]


def build_cnn(cfg: CNNConfig) -> keras.Model:
    """[augmentation], per entry of `filters`: Conv2D x convs_per_block + MaxPooling2D
    [+ Dropout], Flatten, [Dense], Dropout, softmax. With pool_before_activation, each block's
    pooling comes between its last Conv2D and that one's batch norm and activation."""
    stack = [keras.Input(INPUT_SHAPE), *augmentation(cfg.augment)]
    for filters in cfg.filters:
        for conv in range(cfg.convs_per_block):
            last = conv == cfg.convs_per_block - 1
            stack += activated(layers.Conv2D, filters, cfg.kernel_size, padding=cfg.padding.value,
                               cfg=cfg, pool=last and cfg.pool_before_activation)  # fmt: skip
        if not cfg.pool_before_activation:
            stack.append(layers.MaxPooling2D(cfg.pool_size))
        if cfg.block_dropout:
            stack.append(layers.Dropout(cfg.block_dropout))
    stack.append(layers.Flatten())
    if cfg.dense:
        stack += activated(layers.Dense, cfg.dense, cfg=cfg)
    if cfg.dropout:
        stack.append(layers.Dropout(cfg.dropout))
    stack.append(softmax_output())
    return keras.Sequential(stack, name="cnn")


BUILDERS = {DenseConfig: build_dense, CNNConfig: build_cnn}


def build_model(cfg: ModelConfig) -> keras.Model:
    return BUILDERS[type(cfg)](cfg)
