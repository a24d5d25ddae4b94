"""The images a run trained and was tested on, as MLflow dataset inputs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from mnist_exp.training.mnist import CACHE_FILE, subset_digest


def log_datasets(prepared: Any, cache_dir: str | Path) -> None:
    """The training and test images a run used, as MLflow dataset inputs named `mnist`: the
    runs table's Dataset column and its filters. Their digests come from the canonical sha256s
    and the subset's size (data.subset_digest), so nothing is hashed again per run."""
    import mlflow

    source = str(Path(cache_dir) / CACHE_FILE)
    for context, split, x, y in (("training", "train", prepared.x_train, prepared.y_train),
                                 ("test", "test", prepared.x_test, prepared.y_test)):  # fmt: skip
        with warnings.catch_warnings():
            # MLflow registers its local-file source for both "" and "file:" and warns, every
            # time, that a path matches two sources: they are one and the same class.
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
            dataset = mlflow.data.from_numpy(
                x, targets=y, source=source, name="mnist", digest=subset_digest(split, len(x))
            )
        _log_input_once_created(dataset, context)


def _log_input_once_created(dataset: Any, context: str) -> None:
    """mlflow.log_input, tried again once when a parallel job created the same dataset first:
    MLflow's SQL store checks for the dataset and inserts it without a lock, so two jobs
    starting together (a Ray or joblib sweep) can both insert, and the second one fails on
    the datasets table's unique key. The second try finds the row and links to it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.log_input(dataset, context=context)
    except MlflowException as error:
        if "UNIQUE constraint" not in str(error) and "duplicate key" not in str(error):
            raise
        mlflow.log_input(dataset, context=context)
