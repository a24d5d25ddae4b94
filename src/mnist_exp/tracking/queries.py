"""Reading runs back: a sweep's runs, a run's confusion matrix, its link in the UI; and a
sweep's comparison logged to its parent run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mnist_exp.names import CONFUSION_MATRIX_FILE, IN_SWEEP_TAG, LOCAL_UI, PARENT_TAG, UI_URL_ENV
from mnist_exp.tracking.uris import is_local_store


def children_filter(parent_run_id: str) -> str:
    """The search_runs filter for a sweep's child runs (not the runs it skipped: sweep_runs)."""
    return f"tags.{PARENT_TAG} = '{parent_run_id}'"


def in_sweep_filter(parent_run_id: str) -> str:
    """The search_runs filter for the finished runs a sweep skipped rather than train again."""
    return f"tags.`{IN_SWEEP_TAG}{parent_run_id}` = 'skipped'"


def sweep_runs(client: Any, experiment_ids: list[str], parent_run_id: str) -> tuple[list, list]:
    """A sweep's child runs (oldest first), and the finished runs of earlier sweeps it skipped.

    Two searches: MLflow's filter language has no OR.
    """
    found = [
        client.search_runs(experiment_ids, which, order_by=["attributes.start_time ASC"],
                           max_results=10_000)
        for which in (children_filter(parent_run_id), in_sweep_filter(parent_run_id))
    ]  # fmt: skip
    return list(found[0]), list(found[1])


def load_confusion_matrix(run_id: str) -> Any | None:
    """A run's counts[true, predicted], or None for a run logged without them."""
    import mlflow
    import numpy as np

    try:
        logged = mlflow.artifacts.load_dict(f"runs:/{run_id}/{CONFUSION_MATRIX_FILE}")
    except (mlflow.exceptions.MlflowException, OSError):
        return None
    return np.array(logged["counts"])


def log_comparison(parent_run_id: str, directory: Path, files: tuple[str, ...]) -> bool:
    """A sweep's comparison, into its parent run's artifacts under comparison/; False when the
    server refuses it (a user with READ permission on the experiment), which changes nothing."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for name in files:
        try:
            client.log_artifact(parent_run_id, str(directory / name), "comparison")
        except Exception as err:
            response = getattr(err, "response", None)
            if getattr(response, "status_code", None) == 403:
                return False
            raise
    return True


def sweep_parent(client: Any, experiment_id: str, key_tag: str, key: str) -> Any | None:
    """The newest parent run of the sweep with this key that is not running now; None."""
    found = client.search_runs(
        [experiment_id], f"tags.{key_tag} = '{key}' and attributes.status != 'RUNNING'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )  # fmt: skip
    return found[0] if found else None


def run_link(run: Any) -> str | None:
    """The run in an MLflow UI the user can open: the local store's `make ui` address, or the
    server it logs to; None when no UI will be there (a temporary server over another store)."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    base = os.environ.get(UI_URL_ENV, LOCAL_UI if is_local_store(uri) else uri.rstrip("/"))
    if not base:
        return None
    # Without workflowType, MLflow 3's UI opens in its GenAI (traces) mode.
    link = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    return link + "?workflowType=machine_learning"


def ui_hint(link: str | None) -> str:
    """What to start to open `link`, when it is the local store's UI."""
    return " (start the UI with `make ui`)" if link and link.startswith(LOCAL_UI) else ""
