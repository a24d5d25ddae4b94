"""Every model family builds from its config, with the layers the config asks for."""

from __future__ import annotations

import keras
import numpy as np

from mnist_exp.config import CNNConfig, DenseConfig, Padding
from mnist_exp.models import build_model


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
