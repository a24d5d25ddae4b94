"""Where runs are recorded: connecting to the MLflow store or server, and opening the experiment.

mlflow is imported inside functions: a config error should be reported without paying for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from mnist_exp.config import TrackingConfig
from mnist_exp.tracking import credentials, outage
from mnist_exp.tracking.health import TrackingUnavailable, check_database, check_server
from mnist_exp.tracking.store_checks import check_sqlite_dir, check_uri, corrupt_store
from mnist_exp.tracking.uris import (
    is_database_server,
    is_local_store,
    is_server,
    reached_at,
    sqlite_path,
)
from mnist_exp.training.native_logs import library_logs_wanted

# MLflow 3's UI opens an experiment without this tag in its GenAI (traces) view; this one
# opens the runs table with params, metrics, charts and artifacts.
CLASSIC_ML_EXPERIMENT = {"mlflow.experimentKind": "custom_model_development"}


@contextlib.contextmanager
def schema_lock(uri: str, timeout: float = 300) -> Iterator[None]:
    """Held while a process first opens a SQLite store, which is when MLflow creates and migrates
    its schema: processes that do it at once fail with `duplicate column name` and can leave the
    file half-migrated. An OS file lock is freed when its holder dies, so none is ever stale."""
    from filelock import FileLock, Timeout

    db = sqlite_path(uri)
    if db is None or (db.exists() and not os.access(db.parent, os.W_OK)):
        yield  # not SQLite, or a store that is only read (and can be neither made nor migrated)
        return
    lock = db.with_name(db.name + ".lock")
    try:
        with FileLock(lock, timeout=timeout):
            yield
    except Timeout:
        raise TrackingUnavailable(
            f"another process has been creating the MLflow store {db} for {timeout:.0f}s "
            f"(it holds {lock}); wait for it to finish, or stop it"
        ) from None


def open_store(uri: str) -> None:
    """Point MLflow at `uri` and open it once, so that a new SQLite store is created under the
    lock (MLflow keeps the opened store for the rest of the process)."""
    # MLflow's usage telemetry, unless the user asks for it: its thread would keep the together
    # launcher from forking its workers (a thread can hold a lock the child then waits on), and
    # on a closed network it spends a second on a request that cannot reach its host.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    if not library_logs_wanted():
        # "Creating initial MLflow database tables...", "Updating database tables", and
        # alembic's migration steps: on every fresh store, nothing to act on.
        for name in ("mlflow.store.db.utils", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if reached_at(uri) != uri:  # the launching process serves it, and has opened it
        mlflow.set_tracking_uri(reached_at(uri))
        return
    mlflow.set_tracking_uri(uri)
    with schema_lock(uri):
        try:
            mlflow.search_experiments(max_results=1)
        except Exception as err:
            if sqlite_path(uri) is None:
                raise
            raise corrupt_store(uri, err) from None


def use_store(uri: str) -> None:
    """Point MLflow at a store to read from (compare, predict); it must exist already."""
    check_uri(uri)
    credentials.load()
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise TrackingUnavailable(
            f"no MLflow store at {db}; run an experiment first, or pass --tracking-uri"
        )
    if is_server(uri):
        outage.retry_patiently(uri)
        check_server(uri)
    if is_database_server(uri):
        check_database(uri)
    open_store(uri)


def use_experiment(cfg: TrackingConfig | DictConfig) -> str:
    """Point MLflow at the store and experiment (creating them if needed); the experiment id."""
    import mlflow

    credentials.load()
    if is_server(cfg.uri):
        outage.retry_patiently(cfg.uri)
        outage.wait_for_server(cfg.uri)
    check_uri(cfg.uri)
    if is_local_store(cfg.uri):
        check_sqlite_dir(cfg.uri, cfg.artifact_location)
    if is_database_server(cfg.uri):
        check_database(cfg.uri)  # in seconds, where MLflow would retry for 100 s
    open_store(cfg.uri)
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if experiment is not None:
        return mlflow.set_experiment(experiment_id=experiment.experiment_id).experiment_id
    # A server decides where artifacts go; a local store keeps them beside the database.
    location = cfg.artifact_location if is_local_store(cfg.uri) else None
    if location:
        location = Path(location).resolve().as_uri()
    try:
        experiment_id = mlflow.create_experiment(
            cfg.experiment, artifact_location=location, tags=CLASSIC_ML_EXPERIMENT
        )
    except mlflow.exceptions.MlflowException:
        # Another job created it between our lookup and create.
        experiment_id = mlflow.get_experiment_by_name(cfg.experiment).experiment_id
    return mlflow.set_experiment(experiment_id=experiment_id).experiment_id
