"""The schema and the presets registered with Hydra, and a config composed as the CLI does.

Importing this module registers them: every way in (the CLI, the Python API, the other
commands' defaults) imports it before Hydra composes anything.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from mnist_exp.config import (
    PROJECT_ROOT,
    CNNConfig,
    Config,
    DataConfig,
    DenseConfig,
    TrackingConfig,
    TrainConfig,
    validate,
)

CONF_DIR = PROJECT_ROOT / "conf"


def register_configs() -> None:
    """Put the schema where conf/*.yaml can extend it (`/schema/<group>/<name>@_here_`)."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    cs.store(group="schema/data", name="mnist", node=DataConfig)
    cs.store(group="schema/model", name="dense", node=DenseConfig)
    cs.store(group="schema/model", name="cnn", node=CNNConfig)
    cs.store(group="schema/train", name="default", node=TrainConfig)
    cs.store(group="schema/tracking", name="default", node=TrackingConfig)
    # The presets live in experiments/ at the top of the repo, where users look for them, and
    # are offered to Hydra as the `experiment` group (`+experiment=NAME`).
    for preset in sorted((PROJECT_ROOT / "experiments").glob("*.yaml")):
        node = OmegaConf.load(preset)
        cs.store(group="experiment", name=preset.stem, node=node, package="_global_")
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))


def compose_overrides(overrides: Sequence[str] = (), hydra_config: bool = False) -> DictConfig:
    """conf/config.yaml with `overrides`, as `python -m mnist_exp.run OVERRIDES` composes it."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra_config)


def default_config() -> Config:
    """What a plain `python -m mnist_exp.run` uses (honouring MLFLOW_TRACKING_URI and
    MNIST_EXP_DATA_DIR): the store and data cache the other commands default to."""
    return validate(compose_overrides())


register_configs()
