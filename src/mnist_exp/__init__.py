"""mnist-exp: the Keras MNIST tutorial as tracked, sweepable experiments (Hydra, Keras, MLflow).

The Python API (mnist_exp.experiment): run_experiment, run_sweep, compose_config.
"""

import os

# Here, before any module of the package imports TensorFlow: its C++ start-up chatter would
# bury our own output (errors still show).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# MLflow draws a "Downloading artifacts" bar for every file it fetches: a screen of them above
# compare's table, and more in predict and the notebook. =true brings them back.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

__all__ = ["compose_config", "run_experiment", "run_sweep"]


def __getattr__(name: str):
    # On first use, so that `import mnist_exp` stays cheap (no Hydra, MLflow or TensorFlow).
    if name in __all__:
        from mnist_exp import experiment

        return getattr(experiment, name)
    raise AttributeError(f"module 'mnist_exp' has no attribute '{name}'")
