"""Every config composes and validates; every bad override is refused, naming its key."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from mnist_exp.config import PROJECT_ROOT, ConfigError, DenseConfig, validate
from tests.helpers import compose_config

CONF_DIR = PROJECT_ROOT / "conf"
EXPERIMENTS = sorted(p.stem for p in (PROJECT_ROOT / "experiments").glob("*.yaml"))
GROUP_OPTIONS = [
    f"{group.name}={option.stem}"
    for group in sorted(CONF_DIR.iterdir())
    if group.is_dir() and group.name != "experiment"
    for option in sorted(group.glob("*.yaml"))
]


def test_presets_exist():
    assert {"baseline", "hidden_sweep", "dropout_sweep", "cnn", "best"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("override", GROUP_OPTIONS)
def test_every_group_option_composes_and_validates(override):
    validate(compose_config(override))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name):
    validate(compose_config(f"+experiment={name}"))


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if n.endswith("_sweep")])
def test_sweep_presets_sweep_valid_values(name):
    cfg = compose_config(f"+experiment={name}", hydra=True)
    params = cfg.hydra.sweeper.params
    assert params, f"{name} sets no hydra.sweeper.params"
    for key, values in params.items():
        for value in str(values).split(","):
            validate(compose_config(f"+experiment={name}", f"{key}={value}"))


def test_defaults_are_the_tutorial():
    cfg = validate(compose_config())
    assert isinstance(cfg.model, DenseConfig)
    assert (cfg.model.hidden, cfg.model.layers, cfg.model.dropout) == (128, 1, 0.0)
    assert cfg.model.activation.value == "relu"
    assert cfg.train.optimizer.value == "adam"
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.train.validation_split) == (32, 10, 0.2)
    assert cfg.train.lr_schedule.value == "constant" and cfg.train.early_stopping_patience is None
    assert cfg.train.label_smoothing == 0.0
    assert cfg.data.limit_train is None and cfg.data.limit_test is None
    assert validate(compose_config("+experiment=baseline")) == cfg


def test_literal_training_is_the_tutorial_with_keras_dispatch():
    fast, literal = validate(compose_config()), validate(compose_config("train=literal"))
    assert (literal.train.steps_per_execution, literal.train.xla.value) == (1, "never")
    assert literal.train.validation_batch_size is None
    assert (fast.train.steps_per_execution, fast.train.xla.value) == (100, "auto")
    same = ("optimizer", "learning_rate", "batch_size", "epochs", "validation_split")
    assert all(getattr(fast.train, k) == getattr(literal.train, k) for k in same)


def test_store_and_cache_are_absolute_under_the_repo(monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "MNIST_EXP_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    cfg = validate(compose_config())
    assert cfg.tracking.uri == f"sqlite:///{PROJECT_ROOT}/mlruns/mlflow.db"
    assert cfg.tracking.artifact_location == f"{PROJECT_ROOT}/mlruns/artifacts"
    assert cfg.data.cache_dir == f"{PROJECT_ROOT}/data"


def test_environment_variables_relocate_store_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    monkeypatch.setenv("MNIST_EXP_DATA_DIR", str(tmp_path))
    cfg = validate(compose_config())
    assert cfg.tracking.uri == "http://127.0.0.1:5999"
    assert cfg.data.cache_dir == str(tmp_path)


def test_mlflow_experiment_name_keeps_its_meaning(monkeypatch):
    """MLflow logs to MLFLOW_EXPERIMENT_NAME when no experiment is chosen: so do we, and an
    override still chooses."""
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    assert validate(compose_config()).tracking.experiment == "mnist"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "digits-team")
    assert validate(compose_config()).tracking.experiment == "digits-team"
    assert validate(compose_config("tracking.experiment=mine")).tracking.experiment == "mine"


# Hydra refuses these while composing: wrong type, unknown key, unknown choice or group.
COMPOSE_ERRORS = [
    ("model.hidden=abc", "model.hidden"),
    ("model.dropout=lots", "model.dropout"),
    ("model.hiden=64", "hiden"),
    ("trian.epochs=3", "trian"),
    ("train.optimizer=adm", "adam, adamw, sgd, rmsprop"),
    ("model.activation=relu6", "model.activation"),
    ("data.sources=[cache,ftp]", "data.sources"),
    ("model=cnn model.hidden=64", "hidden"),
    ("train.xla=fast", "auto, always, never"),
    ("train.lr_schedule=step", "constant, cosine"),
    ("model=cnn model.batch_norm=maybe", "model.batch_norm"),
    ("model=cnn model.augment.shear=0.1", "shear"),
]


@pytest.mark.parametrize(("overrides", "named"), COMPOSE_ERRORS)
def test_bad_override_is_refused_while_composing(overrides, named):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(*overrides.split())
    assert named in f"{err.value} {err.value.__cause__}"


def test_unknown_group_option_lists_the_choices():
    with pytest.raises(MissingConfigException) as err:
        compose_config("model=rnn")
    assert "model/rnn" in str(err.value)
    assert "cnn" in str(err.value) and "dense" in str(err.value)


# These compose (the types are right) but are out of range: validate() refuses them.
RANGE_ERRORS = [
    ("model.dropout=1.5", "model.dropout=1.5: must be >= 0.0 and < 1.0"),
    ("model.dropout=-0.1", "model.dropout=-0.1"),
    ("model.hidden=0", "model.hidden=0: must be >= 1"),
    ("train.epochs=-1", "train.epochs=-1: must be >= 1"),
    ("train.epochs=0", "train.epochs=0"),
    ("train.validation_split=1", "train.validation_split=1.0: must be >= 0.0 and < 1.0"),
    ("train.batch_size=0", "train.batch_size=0"),
    ("train.learning_rate=0", "train.learning_rate=0.0"),
    ("train.validation_batch_size=0", "train.validation_batch_size=0"),
    ("train.steps_per_execution=0", "train.steps_per_execution=0: must be >= 1"),
    ("data.limit_train=0", "data.limit_train=0"),
    ("data.limit_test=20000", "data.limit_test=20000"),
    ("data.sources=[]", "data.sources=[]"),
    ("tracking.experiment=''", "tracking.experiment: must not be empty"),
    ("model=cnn model.dropout=1", "model.dropout=1.0"),
    ("model=cnn model.filters=[32,64,128,256]", "shrinks to nothing after conv block 4"),
    ("model=cnn model.filters=[]", "model.filters=[]"),
    ("model=cnn model.convs_per_block=0", "model.convs_per_block=0: must be >= 1 and <= 4"),
    ("model=cnn model.convs_per_block=5", "model.convs_per_block=5"),
    ("model=cnn model.convs_per_block=4 model.filters=[8,8,8]", "after conv block 3"),
    ("model=cnn model.augment.rotation=-5", "augment.rotation=-5.0: must be >= 0.0 and <= 180"),
    ("model=cnn model.augment.rotation=181", "model.augment.rotation=181.0"),
    ("model=cnn model.augment.translation=1", "augment.translation=1.0: must be >= 0.0 and < 1"),
    ("model=cnn model.augment.zoom=-0.1", "model.augment.zoom=-0.1"),
    ("model=cnn model.augment.zoom=1.5", "model.augment.zoom=1.5"),
    ("train.early_stopping_patience=0", "train.early_stopping_patience=0: must be >= 1"),
    ("train.label_smoothing=1", "train.label_smoothing=1.0: must be >= 0.0 and < 1.0"),
    (
        "train.early_stopping_patience=3 train.validation_split=0",
        "needs train.validation_split > 0",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), RANGE_ERRORS)
def test_out_of_range_value_is_refused_naming_key_and_range(overrides, message):
    cfg = compose_config(*overrides.split())
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as err:
        validate(compose_config("model.hidden=0", "train.epochs=0"))
    assert "model.hidden=0" in str(err.value) and "train.epochs=0" in str(err.value)


def test_same_padding_allows_deep_cnns():
    validate(compose_config("model=cnn", "model.filters=[8,8,8,8]", "model.padding=same"))
