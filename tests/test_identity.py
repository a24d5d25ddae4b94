"""What a run is known by: its name says what differs, its hash ignores where it is stored."""

from __future__ import annotations

from mnist_exp.config import validate
from mnist_exp.identity import config_hash, hyperparameters, plain_dict, run_name
from tests.helpers import compose_config


def name(*overrides: str) -> str:
    return run_name(validate(compose_config(*overrides)), list(overrides))


def test_run_names_say_what_differs():
    assert name() == "dense-h128"
    assert name("model.hidden=64", "model.dropout=0.2") == "dense-h64-d0.2"
    assert name("model.layers=2") == "dense-h128x2"
    assert name("model=cnn") == "cnn-f32.64-k3-d0.5"
    assert name("+experiment=best") == "cnn-f32.64.128-k3-bn-aug-d0.4"
    assert name("train.learning_rate=0.01", "seed=3") == "dense-h128 learning_rate=0.01 seed=3"


def test_jobs_differing_in_any_key_get_different_names():
    swept = ["model.activation=gelu", "model.activation=tanh", "train=literal",
             "data.limit_train=100", "model=cnn", "model=cnn model.pool_size=3"]  # fmt: skip
    names = [name(*job.split()) for job in swept]
    assert len(set(names)) == len(names), names
    assert names[0] == "dense-h128 activation=gelu"


def test_one_config_has_one_name_whatever_the_order_of_its_overrides():
    given = ["model.hidden=256", "data.limit_train=5000", "train.epochs=2", "train=literal"]
    names = {name(*order) for order in (given, given[::-1], given[1:] + given[:1])}
    assert names == {"dense-h256 limit_train=5000 train=literal epochs=2"}, names


def test_where_things_are_stored_is_not_in_the_name():
    where = ["tracking.uri=sqlite:////tmp/x.db", "data.cache_dir=/tmp/d", "train.threads=1"]
    assert name(*where) == "dense-h128"


def test_config_hash_ignores_where_things_are_stored():
    def hashed(*overrides: str) -> str:
        return config_hash(plain_dict(compose_config(*overrides)))

    assert hashed() == hashed("tracking.uri=sqlite:////elsewhere.db", "data.cache_dir=/tmp/x")
    assert hashed() != hashed("model.hidden=64")
    assert hashed() != hashed("seed=1")


def test_params_leave_out_storage_and_threads():
    params = hyperparameters(plain_dict(compose_config("train.threads=2")))
    assert params["model.hidden"] == 128 and params["train.epochs"] == 10
    assert not [k for k in params if k.startswith(("tracking.", "data.cache_dir", "train.threads"))]
