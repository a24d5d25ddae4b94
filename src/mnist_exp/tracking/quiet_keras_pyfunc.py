"""The logged model's python_function loader: MLflow's own Keras one, predicting without Keras's
progress bar. Keras draws one for every predict() call whose `verbose` is left at "auto", which
MLflow's wrapper does: a bar some 10 000 characters long in a server's log per request, and in
every script or notebook that predicts through mlflow.pyfunc.

This file is copied into every model logged (its code/ folder, as mnist_exp_quiet_keras) and
named as the model's pyfunc loader_module, so the model loads quietly where mnist_exp is not
installed too: it needs nothing of ours, and uses mnist_exp's filter of TensorFlow's start-up
lines only where it finds it.
"""

from __future__ import annotations

import contextlib
import functools


def _load_pyfunc(path: str):
    with _start_up_filtered():  # Keras and TensorFlow load here, and first look for devices
        from mlflow.keras import load as keras_load

        wrapper = keras_load._load_pyfunc(path)
    if not wrapper.save_exported_model:  # an exported model's serve() draws nothing
        quiet = functools.partial(wrapper.model.predict, verbose=0)
        wrapper.get_model_call_method = lambda: quiet
    return wrapper


def _start_up_filtered():
    try:
        from mnist_exp.training.native_logs import native_chatter_filtered
    except ImportError:  # loaded where mnist_exp is not installed
        return contextlib.nullcontext()
    return native_chatter_filtered()
