"""The arrays a model trains on: the tutorial's preprocessing, prepared once per process."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_exp.training import data


def test_prepare_is_the_tutorials_preprocessing(mnist):
    prepared = data.prepare(mnist, limit_train=1000, limit_test=200)
    assert prepared.x_train.shape == (1000, 28, 28, 1) and prepared.x_train.dtype == np.float32
    assert prepared.x_test.shape == (200, 28, 28, 1)
    np.testing.assert_allclose(prepared.x_train[..., 0], mnist.x_train[:1000] / 255, rtol=1e-6)
    assert prepared.y_train_cat.shape == (1000, 10)
    assert (prepared.y_train_cat.argmax(axis=1) == mnist.y_train[:1000]).all()
    assert (prepared.y_train_cat.sum(axis=1) == 1).all()


def test_a_process_prepares_each_data_config_once_and_read_only(mnist_dir, caplog):
    mnist, prepared = data.load_prepared(str(mnist_dir), ("cache",), 100, 50)
    caplog.set_level("INFO", logger="mnist_exp.training.data")
    again = data.load_prepared(str(mnist_dir), ("cache",), 100, 50)  # the next job's
    assert again[0] is mnist and again[1] is prepared
    assert "MNIST loaded from cache" in caplog.text  # its run log still says where from
    assert prepared.x_train.shape == (100, 28, 28, 1) and prepared.y_test_cat.shape == (50, 10)
    with pytest.raises(ValueError, match="read-only"):
        prepared.x_train[0, 0, 0, 0] = 1.0  # one job cannot change what the next trains on
    with pytest.raises(ValueError, match="read-only"):
        mnist.x_train[0, 0, 0] = 1
    other = data.load_prepared(str(mnist_dir), ("cache",), 200, 50)[1]
    assert other.x_train.shape[0] == 200
