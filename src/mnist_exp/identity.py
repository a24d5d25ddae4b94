"""What a run is: its params, the hash that recognises it again, its name, and its code's commit."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_exp.config import PROJECT_ROOT, CNNConfig, Config, DenseConfig

# Keys that say where things are stored or fetched from, or how many threads ran it, not what
# was trained: left out of params and of the config hash, so the same experiment hashes the same
# on any machine.
NOT_HYPERPARAMETERS = ("tracking", "data.cache_dir", "data.sources", "train.threads", "dry_run")


def plain_dict(cfg: DictConfig | Config) -> dict[str, Any]:
    """The resolved config as plain Python values (enums as their names), hydra node excluded."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    out = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    out.pop("hydra", None)
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_hyperparameter(key: str) -> bool:
    return not any(key == skip or key.startswith(skip + ".") for skip in NOT_HYPERPARAMETERS)


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The flattened config minus NOT_HYPERPARAMETERS: what a run is logged and hashed by."""
    return {key: value for key, value in flatten(config).items() if is_hyperparameter(key)}


def config_hash(config: dict[str, Any]) -> str:
    canonical = json.dumps(hyperparameters(config), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# The key that picks a run's random draws (initialisation, shuffling, dropout), not what it is.
SEED = "seed"


def variant_id(config: dict[str, Any]) -> str:
    """What a run is apart from its seed: runs of one variant differ only by chance, and are
    compared as one (mean, interval) rather than one by one."""
    return config_hash({key: value for key, value in config.items() if key != SEED})[:10]


def variant_name(run_name: str) -> str:
    """A run's name without its seed (`dense-h64 seed=3` -> `dense-h64`)."""
    return " ".join(part for part in run_name.split(" ") if not part.startswith(f"{SEED}="))


def git_state() -> dict[str, str]:
    """The commit the code came from, and whether the work tree had uncommitted changes."""

    def git(*args: str) -> str:
        # No optional locks: `git status` would otherwise rewrite the index, and parallel jobs
        # doing it at once fail on index.lock.
        return subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, check=True,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        ).stdout.strip()  # fmt: skip

    try:
        dirty = bool(git("status", "--porcelain"))
        return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": str(dirty)}
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown"}


@functools.cache
def config_keys() -> tuple[str, ...]:
    """Every key of the config, in the schema's order (data, model, train, tracking, seed; the
    dense keys, then the CNN's), so that a table's columns read the same on every call."""

    def walk(node: type, prefix: str) -> list[str]:
        hints = typing.get_type_hints(node)
        keys = []
        for f in dataclasses.fields(node):
            kind = hints[f.name]
            if node is Config and f.name == "model":
                keys += walk(DenseConfig, "model.") + walk(CNNConfig, "model.")
            elif isinstance(kind, type) and dataclasses.is_dataclass(kind):
                keys += walk(kind, f"{prefix}{f.name}.")
            else:
                keys.append(f"{prefix}{f.name}")
        return keys

    return tuple(dict.fromkeys(walk(Config, "")))


# The model keys the short model name already spells out.
NAMED_MODEL_KEYS = {
    "cnn": ("filters", "convs_per_block", "kernel_size", "batch_norm", "augment", "block_dropout",
            "dropout"),
    "dense": ("hidden", "layers", "dropout"),
}  # fmt: skip


def model_name(cfg: Config) -> str:
    """The model in a few characters, e.g. `dense-h128-d0.2` or `cnn-f32.64x2-k3-bn-aug`."""
    model = cfg.model
    if isinstance(model, CNNConfig):
        name = f"cnn-f{'.'.join(map(str, model.filters))}"
        name += f"x{model.convs_per_block}" if model.convs_per_block != 1 else ""
        name += f"-k{model.kernel_size}" + ("-bn" if model.batch_norm else "")
        name += "-aug" if any(dataclasses.astuple(model.augment)) else ""
        name += f"-bd{model.block_dropout:g}" if model.block_dropout else ""
    else:
        name = f"dense-h{model.hidden}" + (f"x{model.layers}" if model.layers != 1 else "")
    return name + (f"-d{model.dropout:g}" if model.dropout else "")


def run_name(cfg: Config, overrides: list[str] = ()) -> str:
    """The model's short name, then every other override that changes what is trained, e.g.
    `dense-h128-d0.2`, `cnn-f32.64-k3-d0.5 learning_rate=0.01`, `dense-h128 activation=gelu`.

    Every override appears but those the short name spells out and where things are stored, so
    jobs of a sweep, which differ in at least one override, never share a name. They appear in
    the config's order, not the command line's, so one config has one name whichever way it
    was given (the CLI, the Python API, a sweep).
    """
    named = {f"model.{key}" for key in NAMED_MODEL_KEYS[cfg.model.family]}
    extras = []
    for override in sorted(overrides, key=in_config_place):
        key, _, value = override.lstrip("+~").partition("=")
        # The model group and its named keys are in the short name; a preset names no value.
        spelled_out = key in ("model", "experiment", *named) or key.startswith(
            tuple(f"{n}." for n in named)
        )
        if not spelled_out and is_hyperparameter(key) and not key.startswith("hydra"):
            extras.append(f"{key.rsplit('.', 1)[-1]}={value}")
    return " ".join([model_name(cfg), *extras])


def in_config_place(override: str) -> tuple[int, int, str]:
    """Where an override goes in a run name: the model's keys first, after the model's short
    name, then the others where they sit in the config (a group, `train=literal`, where its
    keys do); keys the config does not have go last, alphabetically."""
    key = override.lstrip("+~").partition("=")[0]
    order = config_keys()
    after_the_model = 0 if key == "model" or key.startswith("model.") else 1
    for i, known in enumerate(order):
        if known == key or known.startswith(f"{key}."):
            return after_the_model, i, key
    return after_the_model, len(order), key
