"""mnist-exp: the Keras MNIST tutorial as tracked, sweepable experiments (Hydra, Keras, MLflow).

The Python API (mnist_exp.experiment): run_experiment, run_sweep, compose_config.
"""

import os

# Here, before any module of the package imports TensorFlow or MLflow, unless
# MNIST_EXP_LIBRARY_LOGS=1 asks for the libraries' own output (for debugging; the C++ start-up
# lines are filtered in training.native_logs). Each default gives way to the user's own setting.
if os.environ.get("MNIST_EXP_LIBRARY_LOGS", "").strip().lower() not in ("1", "true", "yes"):
    # TensorFlow's C++ INFO and WARNING lines (errors still show).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A "Downloading artifacts" bar for every file MLflow fetches: a screen of them above
    # compare's table, and more in predict and the notebook.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Through a server, MLflow's own "View run ... at:" and "View experiment at:" links at every
    # run's end (and one per logged model): ours, which points at a UI that will still be there,
    # says it once.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_PRINT_MODEL_URLS_ON_CREATION", "false")

__all__ = ["compose_config", "run_experiment", "run_sweep"]


def __getattr__(name: str):
    # On first use, so that `import mnist_exp` stays cheap (no Hydra, MLflow or TensorFlow).
    if name in __all__:
        from mnist_exp import experiment

        return getattr(experiment, name)
    raise AttributeError(f"module 'mnist_exp' has no attribute '{name}'")
