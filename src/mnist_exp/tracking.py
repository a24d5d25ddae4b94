"""Everything MLflow: the store, the experiment, parent and child runs, params, metrics, artifacts.

mlflow is imported inside functions: Hydra instantiates SweepParentRun on every start, and a
config error should be reported without paying for mlflow's import.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_exp.config import PROJECT_ROOT, TrackingConfig

log = logging.getLogger(__name__)

# How a multirun hands its parent run to the jobs: environment variables reach launcher
# subprocesses too, not only jobs run in this process.
PARENT_RUN_ENV = "MNIST_EXP_PARENT_RUN_ID"

# MLflow 3's UI opens an experiment without this tag in its GenAI (traces) view; this one
# opens the runs table with params, metrics, charts and artifacts.
CLASSIC_ML_EXPERIMENT = {"mlflow.experimentKind": "custom_model_development"}

# A parent run's tag per skipped job: skipped.<run id that had already finished it> = job name.
SKIPPED_TAG = "skipped."

# Keys that say where things are stored or fetched from, or how many threads ran it, not what
# was trained: left out of
# params and of the config hash, so the same experiment hashes the same on any machine.
NOT_HYPERPARAMETERS = ("tracking", "data.cache_dir", "data.sources", "train.threads")

# Written into the sweep dir by hydra-optuna-sweeper; kept with the sweep's parent run.
OPTIMIZATION_RESULTS = "optimization_results.yaml"

# Per run: the counts compare.py reads back, and the name the model is logged under
# (`runs:/<run id>/model`).
CONFUSION_MATRIX_FILE = "confusion_matrix.json"
MODEL_NAME = "model"

# The model's requirements, pinned to the installed versions: MLflow would otherwise infer them
# by loading the model in a subprocess, which costs seconds per run.
MODEL_REQUIREMENTS = ("mlflow", "keras", "tensorflow", "numpy")


class TrackingUnavailable(CompactHydraException):
    """The tracking server cannot be reached; raised before any training, so nothing is lost."""


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The flattened config minus NOT_HYPERPARAMETERS: what a run is logged and hashed by."""
    return {
        key: value
        for key, value in flatten(config).items()
        if not any(key == skip or key.startswith(skip + ".") for skip in NOT_HYPERPARAMETERS)
    }


def config_hash(config: dict[str, Any]) -> str:
    canonical = json.dumps(hyperparameters(config), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a server is not there."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({reason}). Start one (`make ui` serves "
            "the local store), fix tracking.uri / MLFLOW_TRACKING_URI, or unset both to use the "
            "local SQLite store."
        ) from None


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


def use_store(uri: str) -> None:
    """Point MLflow at a store to read from (compare, predict); it must exist already."""
    import mlflow

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise TrackingUnavailable(f"no MLflow store at {uri.removeprefix('sqlite:///')}; run "
                                  "an experiment first, or pass --tracking-uri")  # fmt: skip
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    mlflow.set_tracking_uri(uri)


def use_experiment(cfg: TrackingConfig | DictConfig) -> str:
    """Point MLflow at the store and experiment (creating them if needed); the experiment id."""
    import mlflow

    if cfg.uri.startswith(("http://", "https://")):
        check_server(cfg.uri)
    if cfg.uri.startswith("sqlite:///"):
        Path(cfg.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(cfg.uri)
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


@contextlib.contextmanager
def job_run(config: dict[str, Any], run_name: str) -> Iterator[Any]:
    """A child run of the current sweep (or a top-level run), ended FINISHED, FAILED or KILLED.

    A failure leaves its traceback as error.txt in the run, so nothing is lost with the process.
    """
    import mlflow

    tags = {"config_hash": config_hash(config), **git_state()}
    run = mlflow.start_run(
        run_name=run_name, parent_run_id=os.environ.get(PARENT_RUN_ENV) or None, tags=tags
    )
    try:
        mlflow.log_params(hyperparameters(config))
        mlflow.log_text(OmegaConf.to_yaml(config), "config.yaml")
        yield run
    except KeyboardInterrupt:
        mlflow.log_text("Interrupted (Ctrl-C / KeyboardInterrupt)\n", "error.txt")
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.log_text(traceback.format_exc(), "error.txt")
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def finished_run_like(config: dict[str, Any]) -> Any | None:
    """A FINISHED run of the current experiment with this config's hash, if there is one."""
    import mlflow

    found = mlflow.search_runs(
        filter_string=f"tags.config_hash = '{config_hash(config)}' and "
        "attributes.status = 'FINISHED'",
        max_results=1,
        output_format="list",
    )
    return found[0] if found else None


def note_skipped(run_name: str, finished_run_id: str) -> None:
    """Tell the sweep's parent run that a job was skipped, for its end-of-sweep summary."""
    from mlflow import MlflowClient

    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:
        MlflowClient().set_tag(parent, f"{SKIPPED_TAG}{finished_run_id}", run_name)


def epoch_metrics_callback():
    """MLflow's Keras callback: per-epoch loss/accuracy/val_* with step=epoch, model_summary.txt."""
    import mlflow.keras

    class EpochMetrics(mlflow.keras.MlflowCallback):
        # Keras runs validation through evaluate(), which would log every epoch's val metrics a
        # second time as `validation_*` at step 0; fit's own val_* already carry them per epoch.
        def on_test_end(self, logs=None):
            pass

    return EpochMetrics()


def log_results(metrics: dict[str, float], figures: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_metrics(metrics)
    for name, figure in figures.items():
        mlflow.log_figure(figure, name)


def log_confusion_matrix(counts: Any) -> None:
    import mlflow

    described = {"rows": "true digit", "columns": "predicted digit", "counts": counts.tolist()}
    mlflow.log_dict(described, CONFUSION_MATRIX_FILE)


def load_confusion_matrix(run_id: str) -> Any | None:
    """A run's counts[true, predicted], or None for a run logged without them."""
    import mlflow
    import numpy as np

    try:
        logged = mlflow.artifacts.load_dict(f"runs:/{run_id}/{CONFUSION_MATRIX_FILE}")
    except (mlflow.exceptions.MlflowException, OSError):
        return None
    return np.array(logged["counts"])


def _keras_flavor() -> Any:
    """mlflow.keras, except that the model directory exists before save_model writes the input
    example into it: with an input example, mlflow.keras.log_model fails on a missing directory
    (mlflow/mlflow#16183, still open in 3.17). Drop this once that is fixed."""
    import mlflow.keras

    def save_model(path: str, validate_serving_input: bool = True, **kwargs: Any) -> None:
        # Model.log passes its own validate_serving_input on to the flavour; keras's has no use.
        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)

    return types.SimpleNamespace(__name__=mlflow.keras.__name__, save_model=save_model)


def log_model(model: Any, x_example: Any, probabilities: Any) -> float:
    """The trained Keras model, loadable with mlflow.pyfunc.load_model; the seconds it took.

    The signature and input example come from a few test images and the model's output for them.
    """
    from importlib.metadata import version

    import mlflow
    from mlflow.models import infer_signature

    start = time.perf_counter()
    mlflow.models.Model.log(
        artifact_path=None,
        name=MODEL_NAME,
        flavor=_keras_flavor(),
        model=model,
        signature=infer_signature(x_example, probabilities),
        input_example=x_example,
        pip_requirements=[f"{pkg}=={version(pkg)}" for pkg in MODEL_REQUIREMENTS],
        # MLflow would load the model back to predict the example, printing Keras progress bars
        # into the run log; tests/test_tracking.py checks that round trip instead.
        validate_serving_input=False,
    )
    seconds = time.perf_counter() - start
    mlflow.log_metric("log_model_seconds", seconds)
    return seconds


def log_comparison(parent_run_id: str, directory: Path, files: tuple[str, ...]) -> None:
    """A sweep's comparison, into its parent run's artifacts under comparison/."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for name in files:
        client.log_artifact(parent_run_id, str(directory / name), "comparison")


def register_model(run_id: str, name: str) -> str:
    """Register the model a run logged as a new version of `name`; the version number."""
    import mlflow

    outputs = mlflow.MlflowClient().get_run(run_id).outputs
    model_ids = [output.model_id for output in (outputs.model_outputs if outputs else [])]
    if not model_ids:
        raise LookupError(f"run {run_id} logged no model (it predates model logging)")
    return mlflow.register_model(f"models:/{model_ids[-1]}", name).version


def log_file(path: str | Path) -> None:
    import mlflow

    if Path(path).is_file():
        mlflow.log_artifact(str(path))


def run_link(run: Any) -> str:
    import mlflow

    uri = mlflow.get_tracking_uri()
    local = is_local_store(uri)
    base = "http://127.0.0.1:5000" if local else uri.rstrip("/")
    # Without workflowType, MLflow 3's UI opens in its GenAI (traces) mode.
    link = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    link += "?workflowType=machine_learning"
    return link + (" (start the UI with `make ui`)" if local else "")


class SweepParentRun(Callback):
    """Hydra callback: one MLflow parent run per multirun, ended with the sweep's outcome."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        launcher = config.hydra.runtime.choices.get("hydra/launcher", "basic")
        try:
            check_store_takes_parallel_jobs(launcher, config.tracking.uri)
            experiment_id = use_experiment(config.tracking)
        except CompactHydraException as err:
            # Hydra turns a callback's exceptions into warnings and sweeps on regardless; an
            # exit is what stops it, before any job runs or any run is recorded.
            print(err, file=sys.stderr)
            sys.exit(1)
        overrides = " ".join(config.hydra.overrides.task)
        sweep_params = config.hydra.sweeper.get("params") or {}
        swept = " ".join(f"{k}={v}" for k, v in sweep_params.items())
        run = MlflowClient().create_run(
            experiment_id,
            run_name=" ".join(part for part in ("sweep", swept, overrides) if part),
            tags={"sweep_dir": str(config.hydra.sweep.dir), **git_state()},
        )
        self.run_id = run.info.run_id
        self.sweep_dir = Path(config.hydra.sweep.dir)
        os.environ[PARENT_RUN_ENV] = self.run_id
        # Hydra skips on_multirun_end when a job raises or the user presses Ctrl-C.
        atexit.register(self._end, interrupted=True)
        log.info("Sweep parent run %s", self.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._end(interrupted=False) == "FAILED":
            # The jobs caught their own errors so the sweep could go on; the exit code says so.
            sys.exit(1)

    def _end(self, interrupted: bool) -> str | None:
        if self.run_id is None:
            return None
        from mlflow import MlflowClient

        client = MlflowClient()
        parent = client.get_run(self.run_id)
        children = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'",
            order_by=["attributes.start_time ASC"],
        )
        skipped = {
            key.removeprefix(SKIPPED_TAG): name
            for key, name in parent.data.tags.items()
            if key.startswith(SKIPPED_TAG)
        }
        status = None
        if not children and not skipped:
            # Stopped before any job started (e.g. a bad override): the parent records nothing.
            client.delete_run(self.run_id)
            log.info("Sweep parent run %s deleted: no job ran", self.run_id)
        else:
            ended = {}
            for child in children:
                ended[child.info.run_id] = child.info.status
                if child.info.status == "RUNNING":
                    # Its process ended without ending the run: a launcher stopped its worker,
                    # or the OS killed it (out of memory). It must not stay RUNNING forever.
                    ended[child.info.run_id] = "KILLED" if interrupted else "FAILED"
                    client.set_terminated(child.info.run_id, ended[child.info.run_id])
            statuses = list(ended.values())
            if "FAILED" in statuses:
                status = "FAILED"
            else:
                status = "KILLED" if interrupted or "KILLED" in statuses else "FINISHED"
            # What a search sweeper (Optuna) concluded: its best parameters and value.
            results = self.sweep_dir / OPTIMIZATION_RESULTS
            if results.is_file():
                client.log_artifact(self.run_id, str(results))
            client.set_terminated(self.run_id, status)
            log.info(
                "Sweep %s (parent run %s): %d finished, %d failed, %d killed, %d skipped",
                status, self.run_id, statuses.count("FINISHED"), statuses.count("FAILED"),
                statuses.count("KILLED"), len(skipped),
            )  # fmt: skip
            for child in children:
                if ended[child.info.run_id] != "FINISHED":
                    log.info("  %-8s %s  %s", ended[child.info.run_id], child.info.run_id,
                             child.info.run_name)  # fmt: skip
            for run_id, name in skipped.items():
                log.info("  SKIPPED  %s  %s (already finished)", run_id, name)
        os.environ.pop(PARENT_RUN_ENV, None)
        self.run_id = None
        return status
