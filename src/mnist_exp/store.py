"""Where runs are recorded: connecting to the MLflow store or server, and opening the experiment.

mlflow is imported inside functions: a config error should be reported without paying for it.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from mnist_exp.config import TrackingConfig

# MLflow 3's UI opens an experiment without this tag in its GenAI (traces) view; this one
# opens the runs table with params, metrics, charts and artifacts.
CLASSIC_ML_EXPERIMENT = {"mlflow.experimentKind": "custom_model_development"}


class TrackingUnavailable(CompactHydraException):
    """The store or server cannot be used; raised before any training, so nothing is lost."""


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def health_problem(uri: str, timeout: float = 5.0) -> str | None:
    """Why the MLflow server at `uri` does not answer its health check; None when it does."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            response.read()
            return None if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as err:
        return str(getattr(err, "reason", err))


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a server is not there."""
    problem = health_problem(uri, timeout)
    if problem is not None:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({problem}). Start one (`make ui` "
            "serves the local store), fix tracking.uri / MLFLOW_TRACKING_URI, or unset both to "
            "use the local SQLite store."
        )


def check_store_takes_parallel_jobs(launcher: str, uri: str) -> None:
    """Jobs that run at once, in several processes, must log through a server: writing one
    SQLite file each, they race on its schema and fail with `database is locked`."""
    if launcher != "basic" and is_local_store(uri):
        raise TrackingUnavailable(
            f"hydra/launcher={launcher} runs jobs in several processes at once, and they must "
            f"not all write one SQLite store ({uri}): they race and fail with `database is "
            "locked`. Log through a tracking server: `make sweep-parallel`, or `make server` "
            "in another terminal and add tracking=server."
        )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI; None for any other store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


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
    import mlflow

    mlflow.set_tracking_uri(uri)
    with schema_lock(uri):
        try:
            mlflow.search_experiments(max_results=1)
        except Exception as err:
            if sqlite_path(uri) is None:
                raise
            from mnist_exp.store_checks import corrupt_store

            raise corrupt_store(uri, err) from None


def use_store(uri: str) -> None:
    """Point MLflow at a store to read from (compare, predict); it must exist already."""
    from mnist_exp.store_checks import check_uri

    check_uri(uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise TrackingUnavailable(f"no MLflow store at {uri.removeprefix('sqlite:///')}; run "
                                  "an experiment first, or pass --tracking-uri")  # fmt: skip
    if is_server(uri):
        from mnist_exp import outage

        outage.retry_patiently(uri)
        check_server(uri)
    open_store(uri)


def use_experiment(cfg: TrackingConfig | DictConfig) -> str:
    """Point MLflow at the store and experiment (creating them if needed); the experiment id."""
    import mlflow

    if is_server(cfg.uri):
        from mnist_exp import outage

        outage.retry_patiently(cfg.uri)
        outage.wait_for_server(cfg.uri)
    from mnist_exp.store_checks import check_sqlite_dir, check_uri

    check_uri(cfg.uri)
    if is_local_store(cfg.uri):
        check_sqlite_dir(cfg.uri, cfg.artifact_location)
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
