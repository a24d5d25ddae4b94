"""The logged model's python_function loader: MLflow's own Keras one, predicting without Keras's
progress bar. Keras draws one for every predict() call whose `verbose` is left at "auto", which
MLflow's wrapper does: a bar some 10 000 characters long in a server's log per request, and in
every script or notebook that predicts through mlflow.pyfunc.

This file is copied into every model logged (its code/ folder, as mnist_exp_quiet_keras) and
named as the model's pyfunc loader_module, so the model loads quietly where mnist_exp is not
installed too. It imports nothing of ours for that reason.
"""

from __future__ import annotations

import functools

from mlflow.keras import load as keras_load


def _load_pyfunc(path: str):
    wrapper = keras_load._load_pyfunc(path)
    if not wrapper.save_exported_model:  # an exported model's serve() draws nothing
        quiet = functools.partial(wrapper.model.predict, verbose=0)
        wrapper.get_model_call_method = lambda: quiet
    return wrapper
