"""build_model(model_cfg) -> an uncompiled keras.Model, for every model family in the schema."""

from __future__ import annotations

import keras
from keras import layers

from mnist_exp.config import IMAGE_SIZE, CNNConfig, DenseConfig, ModelConfig

NUM_CLASSES = 10
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


def build_dense(cfg: DenseConfig) -> keras.Model:
    """The tutorial's network: Flatten -> Dense(hidden, relu) x layers -> Dense(10, softmax)."""
    stack = [keras.Input(INPUT_SHAPE), layers.Flatten()]
    for _ in range(cfg.layers):
        stack.append(layers.Dense(cfg.hidden, activation=cfg.activation.value))
        if cfg.dropout:
            stack.append(layers.Dropout(cfg.dropout))
    stack.append(layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(stack, name="dense")


def build_cnn(cfg: CNNConfig) -> keras.Model:
    """Conv2D + MaxPooling2D per entry of `filters`, Flatten, [Dense], Dropout, softmax."""
    stack = [keras.Input(INPUT_SHAPE)]
    for filters in cfg.filters:
        stack.append(
            layers.Conv2D(
                filters, cfg.kernel_size, activation=cfg.activation.value, padding=cfg.padding.value
            )
        )
        stack.append(layers.MaxPooling2D(cfg.pool_size))
    stack.append(layers.Flatten())
    if cfg.dense:
        stack.append(layers.Dense(cfg.dense, activation=cfg.activation.value))
    if cfg.dropout:
        stack.append(layers.Dropout(cfg.dropout))
    stack.append(layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(stack, name="cnn")


BUILDERS = {DenseConfig: build_dense, CNNConfig: build_cnn}


def build_model(cfg: ModelConfig) -> keras.Model:
    return BUILDERS[type(cfg)](cfg)
