"""The trained model in MLflow: logged in Keras's flavour with a signature, and registered."""

from __future__ import annotations

import functools
import os
import shutil
import time
import types
from pathlib import Path
from typing import Any

from mnist_exp.training.backend import tensorflow_left_unloaded

# The name the model is logged under (`runs:/<run id>/model`).
MODEL_NAME = "model"
# The model's own pyfunc loader (quiet_keras_pyfunc.py), in its code/ folder, named so as not
# to clash with anything on sys.path where it is loaded.
QUIET_LOADER, QUIET_LOADER_DIR = "mnist_exp_quiet_keras", "code"

# The model's requirements, pinned to the installed versions: MLflow would otherwise infer them
# by loading the model in a subprocess, which costs seconds per run.
MODEL_REQUIREMENTS = ("mlflow", "keras", "tensorflow", "numpy")


def _keras_flavor() -> Any:
    """mlflow.keras, except that the model directory exists before save_model writes the input
    example into it: with an input example, mlflow.keras.log_model fails on a missing directory
    (mlflow/mlflow#16183, still open in 3.17; drop that part once it is fixed), and that its
    pyfunc predicts without Keras's progress bar (quiet_keras_pyfunc.py, shipped with it)."""
    import mlflow.keras
    import mlflow.pyfunc

    def save_model(path: str, validate_serving_input: bool = True, **kwargs: Any) -> None:
        # Model.log passes its own validate_serving_input on to the flavour; keras's has no use.
        os.makedirs(path, exist_ok=True)
        with tensorflow_left_unloaded():  # on JAX, Keras's serializer would import it
            mlflow.keras.save_model(path=path, **kwargs)
        code = Path(path) / QUIET_LOADER_DIR
        code.mkdir(exist_ok=True)
        shutil.copyfile(Path(__file__).with_name("quiet_keras_pyfunc.py"),
                        code / f"{QUIET_LOADER}.py")  # fmt: skip
        model = kwargs["mlflow_model"]
        pyfunc = model.flavors[mlflow.pyfunc.FLAVOR_NAME]
        # The same environment files, with a loader of ours around MLflow's.
        mlflow.pyfunc.add_to_model(model, loader_module=QUIET_LOADER, code=QUIET_LOADER_DIR,
                                   conda_env=pyfunc.get("conda"),
                                   python_env=pyfunc.get("python_env"))  # fmt: skip
        model.save(str(Path(path) / "MLmodel"))

    return types.SimpleNamespace(__name__=mlflow.keras.__name__, save_model=save_model)


@functools.cache
def pinned_requirements() -> tuple[str, ...]:
    """MODEL_REQUIREMENTS at the versions installed here, read once per process: each lookup
    searches the installed distributions (8 ms per model)."""
    from importlib.metadata import version

    return tuple(f"{pkg}=={version(pkg)}" for pkg in MODEL_REQUIREMENTS)


def warm_up() -> None:
    """What a process's first log_model would otherwise pay: MLflow's modules for it, and its
    check of the requirements against the installed packages, which scans every installed
    distribution once per process (0.4 s)."""
    import mlflow.keras  # noqa: F401
    import mlflow.models  # noqa: F401
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    warn_dependency_requirement_mismatches(list(pinned_requirements()))


def log_model(model: Any, x_example: Any, probabilities: Any, run_id: str | None = None) -> float:
    """The trained Keras model, loadable with mlflow.pyfunc.load_model; the seconds it took.

    Into run `run_id`, by default the active one (another thread's run has to be named). The
    signature and input example come from a few test images and the model's output for them.
    """
    import mlflow
    from mlflow.models import infer_signature

    run_id = run_id or mlflow.active_run().info.run_id
    start = time.perf_counter()
    mlflow.models.Model.log(
        run_id=run_id,
        artifact_path=None,
        name=MODEL_NAME,
        flavor=_keras_flavor(),
        model=model,
        signature=infer_signature(x_example, probabilities),
        input_example=x_example,
        pip_requirements=list(pinned_requirements()),
        # MLflow would load the model back to predict the example, printing Keras progress bars
        # into the run log; tests/tracking/test_tracked_model.py checks that round trip.
        validate_serving_input=False,
    )
    seconds = time.perf_counter() - start
    mlflow.MlflowClient().log_metric(run_id, "log_model_seconds", seconds)
    return seconds


def register_model(run_id: str, name: str, description: str | None = None) -> str:
    """Register the model a run logged as a new version of `name`, described; its number."""
    import mlflow

    outputs = mlflow.MlflowClient().get_run(run_id).outputs
    model_ids = [output.model_id for output in (outputs.model_outputs if outputs else [])]
    if not model_ids:
        raise LookupError(f"run {run_id} logged no model (it predates model logging)")
    version = mlflow.register_model(f"models:/{model_ids[-1]}", name).version
    if description:
        mlflow.MlflowClient().update_model_version(name, version, description=description)
    return version
