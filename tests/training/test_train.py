"""Training as the config asks: the fast path changes how steps are dispatched, not what they
compute; schedules and early stopping come from Keras callbacks."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from mnist_exp.choices import LRSchedule, Optimizer, Precision, Xla
from mnist_exp.config import CNNConfig, DenseConfig, TrainConfig, TTAConfig
from mnist_exp.training import data, train
from mnist_exp.training.models import augmentation, build_model


@pytest.fixture(scope="module")
def small(mnist) -> data.Prepared:
    return data.prepare(mnist, limit_train=1200, limit_test=300)


def fit_once(small, cfg: TrainConfig, model_cfg=None):
    train.set_seed(42)
    model = build_model(model_cfg or DenseConfig(hidden=32))
    train.compile_model(model, cfg, train.train_samples(len(small.x_train), cfg))
    fitted = train.fit(model, small, cfg)
    return model, fitted


@pytest.mark.slow
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


@pytest.mark.slow
def test_epoch_timer_adds_time_and_throughput_per_epoch(small):
    _, fitted = fit_once(small, TrainConfig(epochs=2, batch_size=64))
    assert len(fitted.history["epoch_seconds"]) == 2
    assert all(s > 0 for s in fitted.history["epoch_seconds"])
    throughput = fitted.history["train_samples_per_second"]
    # 960 of the 1200 images train (validation_split 0.2), in at most the whole epoch's time.
    for seconds, rate in zip(fitted.history["epoch_seconds"], throughput, strict=True):
        assert rate >= 960 / seconds
    assert fitted.seconds > 0


@pytest.mark.slow
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
    train.compile_model(model, TrainConfig(optimizer=Optimizer.sgd, learning_rate=0.05), 1000)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_label_smoothing_makes_certainty_cost_something(small):
    certain = small.y_test_cat[:8]  # predicted probabilities equal to the one-hot labels
    costs = {}
    for smoothing in (0.0, 0.1):
        model = build_model(DenseConfig(hidden=8))
        train.compile_model(model, TrainConfig(label_smoothing=smoothing), 1000)
        costs[smoothing] = float(model.loss(certain, certain))
    assert costs[0.0] == pytest.approx(0.0, abs=1e-5)  # the tutorial's loss
    # The 0.01 aimed at each of the nine wrong digits meets a probability of 0 (clipped to 1e-7).
    assert costs[0.1] == pytest.approx(-0.01 * 9 * np.log(1e-7) - 0.91 * np.log(1 - 1e-7), rel=1e-3)


def test_the_tutorial_fits_with_no_callbacks_of_its_own():
    assert train.training_callbacks(TrainConfig()) == []


def test_cosine_schedule_goes_from_the_learning_rate_towards_zero_over_the_epochs():
    (callback,) = train.training_callbacks(
        TrainConfig(lr_schedule=LRSchedule.cosine, learning_rate=0.01, epochs=10)
    )
    assert isinstance(callback, keras.callbacks.LearningRateScheduler)
    rates = [callback.schedule(epoch) for epoch in range(10)]
    assert rates[0] == pytest.approx(0.01)
    assert rates[5] == pytest.approx(0.005)
    assert rates[9] == pytest.approx(0.01 * (1 + np.cos(np.pi * 0.9)) / 2)
    assert rates == sorted(rates, reverse=True)


def test_warmup_cosine_climbs_for_its_warmup_epochs_then_falls_to_zero_at_the_last_step():
    cfg = TrainConfig(lr_schedule=LRSchedule.warmup_cosine, learning_rate=0.01, batch_size=32,
                      epochs=4, warmup_epochs=1)  # fmt: skip
    schedule = train.learning_rate(cfg, train_images=960)  # 30 steps per epoch, 120 in all
    rate = [float(schedule(step)) for step in range(121)]
    assert rate[0] == 0.0 and rate[15] == pytest.approx(0.005) and rate[30] == pytest.approx(0.01)
    assert rate[:31] == sorted(rate[:31])  # up, step by step, over the first epoch
    assert rate[75] == pytest.approx(0.005)  # half way down the cosine
    assert rate[30:] == sorted(rate[30:], reverse=True) and rate[120] == pytest.approx(0.0)


@pytest.mark.slow
def test_a_per_step_schedule_lands_in_each_epochs_logs(small):
    cfg = TrainConfig(lr_schedule=LRSchedule.warmup_cosine, learning_rate=0.01, epochs=3,
                      warmup_epochs=0.5)  # fmt: skip
    _, fitted = fit_once(small, cfg)
    schedule = train.learning_rate(cfg, train.train_samples(len(small.x_train), cfg))
    steps = math.ceil(train.train_samples(len(small.x_train), cfg) / cfg.batch_size)
    ends = [float(schedule(steps * epoch)) for epoch in (1, 2, 3)]
    assert fitted.history["learning_rate"] == pytest.approx(ends)
    assert ends[0] > ends[1] > ends[2]


def test_early_stopping_watches_val_accuracy_and_keeps_the_best_or_the_last_epoch():
    (callback,) = train.training_callbacks(TrainConfig(early_stopping_patience=3))
    assert isinstance(callback, keras.callbacks.EarlyStopping)
    assert (callback.monitor, callback.patience, callback.restore_best_weights) == (
        "val_accuracy", 3, True,
    )  # fmt: skip
    assert callback.mode == "max"  # higher is better
    (last,) = train.training_callbacks(
        TrainConfig(early_stopping_patience=3, restore_best_weights=False)
    )
    assert not last.restore_best_weights


def test_optimizers_keep_their_name_in_a_process_that_compiles_several_models():
    names = []
    for _ in range(2):
        model = build_model(DenseConfig(hidden=4))
        train.compile_model(model, TrainConfig(), 1000)
        names.append(model.optimizer.name)
    assert names == ["adam", "adam"]


def test_test_time_augmentation_averages_the_image_and_its_transformed_copies(small):
    model, _ = fit_once(small, TrainConfig(epochs=1), CNNConfig(filters=[8], dense=16))
    plain_scores, plain = train.evaluate(model, small)
    assert train.evaluate(model, small, TTAConfig(rotation=10))[0] == plain_scores

    tta = TTAConfig(rotation=10, translation=0.1, zoom=0.1, copies=3)
    train.set_seed(7)
    scores, probabilities = train.evaluate(model, small, tta)
    # The same copies again, made by hand: the mean of the image's and its copies' softmax.
    train.set_seed(7)
    transform = keras.Sequential(augmentation(tta))
    copies = [model(transform(small.x_test, training=True), training=False) for _ in range(3)]
    expected = (plain + sum(np.asarray(c) for c in copies)) / 4
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-6)
    assert not np.allclose(probabilities, plain)  # the copies differ from the image
    assert scores["test_accuracy_plain"] == plain_scores["test_accuracy"]
    assert scores["test_accuracy"] == pytest.approx(
        np.mean(probabilities.argmax(1) == small.y_test_cat.argmax(1))
    )


def test_confusion_matrix_counts_true_digit_by_predicted_digit():
    y_true = np.array([0, 0, 1, 9, 9, 9])
    probabilities = np.eye(10)[[0, 1, 1, 9, 9, 4]]
    counts = train.confusion_matrix(y_true, probabilities)
    assert counts.shape == (10, 10) and counts.sum() == 6
    assert (counts[0, 0], counts[0, 1], counts[1, 1], counts[9, 9], counts[9, 4]) == (1, 1, 1, 2, 1)


def test_mixed_bfloat16_trains_in_bfloat16_and_still_gives_float32_probabilities(small):
    train.set_precision(Precision.mixed_bfloat16)
    try:
        model = build_model(CNNConfig(filters=[8], dense=16))
    finally:
        train.set_precision(Precision.float32)  # the policy is process-wide
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert (conv.compute_dtype, conv.variable_dtype) == ("bfloat16", "float32")
    train.compile_model(model, TrainConfig(epochs=1), 1000)
    fitted = train.fit(model, small, TrainConfig(epochs=1))
    scores, probabilities = train.evaluate(model, small)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert fitted.history["val_accuracy"][0] > 0.3 and scores["test_accuracy"] > 0.3  # chance: 0.1


def test_a_loss_that_turns_nan_stops_training_with_a_clear_error(small):
    cfg = TrainConfig(optimizer=Optimizer.sgd, learning_rate=10.0, epochs=3)
    with pytest.raises(train.TrainingDiverged, match="became nan in epoch 1 .* lower train.learn"):
        fit_once(small, cfg, DenseConfig(layers=3))  # three ReLU layers blow up at this rate
