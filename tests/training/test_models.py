"""Every model family builds from its config, with the layers the config asks for."""

from __future__ import annotations

import keras
import numpy as np

from mnist_exp.choices import Padding
from mnist_exp.config import AugmentConfig, CNNConfig, DenseConfig
from mnist_exp.training.models import augmentation, build_model


def layer_types(model: keras.Model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def test_baseline_is_the_tutorials_network():
    model = build_model(DenseConfig())
    assert layer_types(model) == ["Flatten", "Dense", "Dense"]
    assert model.count_params() == 101_770  # 784*128+128 + 128*10+10, as the tutorial prints
    assert model.output_shape == (None, 10)


def test_dense_variants():
    model = build_model(DenseConfig(hidden=64, layers=2, dropout=0.2))
    assert layer_types(model) == ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert model.layers[1].units == 64 and model.layers[2].rate == 0.2
    assert layer_types(build_model(DenseConfig(layers=0))) == ["Flatten", "Dense"]


def test_cnn_uses_the_tutorials_imported_layers():
    model = build_model(CNNConfig())
    assert layer_types(model) == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dropout", "Dense",
    ]  # fmt: skip
    assert model.layers[0].filters == 32 and model.layers[2].filters == 64
    assert model.output_shape == (None, 10)


def test_cnn_same_padding_and_no_dense_head():
    model = build_model(CNNConfig(filters=[8, 8, 8], padding=Padding.same, dense=0, dropout=0))
    assert layer_types(model).count("Conv2D") == 3
    assert "Dropout" not in layer_types(model)
    probabilities = model.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_cnn_with_batch_norm_stacks_conv_norm_activation_and_drops_the_bias():
    model = build_model(CNNConfig(filters=[8, 16], convs_per_block=2, padding=Padding.same,
                                  batch_norm=True, dense=32))  # fmt: skip
    conv_block = ["Conv2D", "BatchNormalization", "Activation"] * 2 + ["MaxPooling2D"]
    assert layer_types(model) == [*conv_block, *conv_block, "Flatten",
        "Dense", "BatchNormalization", "Activation", "Dropout", "Dense"]  # fmt: skip
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 8, 16, 16]
    assert not any(c.use_bias for c in convs)  # batch norm's shift replaces it


def test_pool_before_activation_pools_each_blocks_last_conv_and_computes_the_same_function():
    cfg = CNNConfig(filters=[8, 16], convs_per_block=2, padding=Padding.same, batch_norm=True,
                    dense=32, pool_before_activation=True)  # fmt: skip
    model = build_model(cfg)
    block = ["Conv2D", "BatchNormalization", "Activation",
             "Conv2D", "MaxPooling2D", "BatchNormalization", "Activation"]  # fmt: skip
    assert layer_types(model)[:14] == [*block, *block]
    # Without batch norm it is the very same function as pooling after the activation.
    plain = {"filters": [8], "dense": 0, "dropout": 0.0, "padding": Padding.same}
    keras.utils.set_random_seed(1)
    late = build_model(CNNConfig(**plain))
    early = build_model(CNNConfig(**plain, pool_before_activation=True))
    assert layer_types(early)[:3] == ["Conv2D", "MaxPooling2D", "Activation"]
    early.set_weights(late.get_weights())
    images = np.random.default_rng(0).random((4, 28, 28, 1), np.float32)
    np.testing.assert_allclose(early.predict(images, verbose=0), late.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


def test_block_dropout_follows_every_pooling():
    model = build_model(CNNConfig(filters=[8, 16], block_dropout=0.25, dense=0, dropout=0))
    assert layer_types(model) == ["Conv2D", "MaxPooling2D", "Dropout", "Conv2D", "MaxPooling2D",
                                  "Dropout", "Flatten", "Dense"]  # fmt: skip
    assert {layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)} == {
        0.25
    }


def test_augmentation_transforms_while_training_only():
    cfg = CNNConfig(augment=AugmentConfig(rotation=15, translation=0.1, zoom=0.1))
    model = build_model(cfg)
    assert layer_types(model)[:3] == ["RandomRotation", "RandomTranslation", "RandomZoom"]
    augment = keras.Sequential(augmentation(cfg.augment))
    digit = np.zeros((1, 28, 28, 1), np.float32)
    digit[0, 6:22, 12:16] = 1.0  # a "1"
    np.testing.assert_array_equal(augment(digit, training=False), digit)
    assert not np.allclose(augment(digit, training=True), digit)
