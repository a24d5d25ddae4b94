"""The fast path changes how steps are dispatched, not what they compute."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist_exp import data, train
from mnist_exp.config import CNNConfig, DenseConfig, Optimizer, TrainConfig, Xla
from mnist_exp.models import build_model


@pytest.fixture(scope="module")
def small(mnist) -> data.Prepared:
    return data.prepare(mnist, limit_train=1200, limit_test=300)


def fit_once(small, cfg: TrainConfig, model_cfg=None):
    train.set_seed(42)
    model = build_model(model_cfg or DenseConfig(hidden=32))
    train.compile_model(model, cfg)
    fitted = train.fit(model, small, cfg)
    return model, fitted


def test_steps_per_execution_gives_the_same_training(small):
    literal = TrainConfig(
        epochs=2, steps_per_execution=1, xla=Xla.never, validation_batch_size=None
    )
    batched = TrainConfig(
        epochs=2, steps_per_execution=50, xla=Xla.never, validation_batch_size=512
    )
    model_a, fit_a = fit_once(small, literal)
    model_b, fit_b = fit_once(small, batched)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(fit_a.history[key], fit_b.history[key], rtol=1e-5)
    for w_a, w_b in zip(model_a.get_weights(), model_b.get_weights(), strict=True):
        np.testing.assert_allclose(w_a, w_b, rtol=1e-5, atol=1e-6)


def test_xla_is_used_where_it_was_measured_to_pay():
    dense, cnn = build_model(DenseConfig()), build_model(CNNConfig())
    assert train.uses_xla(dense, TrainConfig(xla=Xla.auto))
    assert not train.uses_xla(cnn, TrainConfig(xla=Xla.auto))
    assert train.uses_xla(cnn, TrainConfig(xla=Xla.always))
    assert not train.uses_xla(dense, TrainConfig(xla=Xla.never))


def test_epoch_timer_adds_time_and_throughput_per_epoch(small):
    _, fitted = fit_once(small, TrainConfig(epochs=2, batch_size=64))
    assert len(fitted.history["epoch_seconds"]) == 2
    assert all(s > 0 for s in fitted.history["epoch_seconds"])
    throughput = fitted.history["train_samples_per_second"]
    # 960 of the 1200 images train (validation_split 0.2), in at most the whole epoch's time.
    for seconds, rate in zip(fitted.history["epoch_seconds"], throughput, strict=True):
        assert rate >= 960 / seconds
    assert fitted.seconds > 0


def test_one_pass_evaluation_matches_keras_evaluate(small):
    model, _ = fit_once(small, TrainConfig(epochs=1))
    scores, probabilities = train.evaluate(model, small)
    loss, accuracy = model.evaluate(small.x_test, small.y_test_cat, verbose=0)
    assert scores["test_loss"] == pytest.approx(loss, rel=1e-5)
    assert scores["test_accuracy"] == pytest.approx(accuracy, abs=1e-7)
    assert probabilities.shape == (300, 10)
    assert (probabilities.argmax(1) == small.y_test).mean() == pytest.approx(accuracy)


def test_optimizer_and_learning_rate_reach_keras(small):
    model = build_model(DenseConfig(hidden=8))
    train.compile_model(model, TrainConfig(optimizer=Optimizer.sgd, learning_rate=0.05))
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
