"""Conditional parts of Optuna search spaces (hydra-optuna-sweeper's `custom_search_space`)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

DENSE_WIDTHS = (64, 128, 256, 512)
CNN_HEAD_WIDTHS = (64, 128, 256)


def model_family(cfg: DictConfig, trial: Any) -> None:
    """Dense or CNN, then the width that exists in that family: `model.hidden` is a dense-only
    key and `model.dense` a CNN-only one, so suggesting both would break the other family."""
    if trial.suggest_categorical("model", ["dense", "cnn"]) == "dense":
        trial.suggest_categorical("model.hidden", DENSE_WIDTHS)
    else:
        trial.suggest_categorical("model.dense", CNN_HEAD_WIDTHS)
