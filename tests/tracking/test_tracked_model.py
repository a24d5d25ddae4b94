"""The model a run logs is MLflow's Keras flavour: it loads as pyfunc and predicts as Keras did,
without a progress bar."""

from __future__ import annotations

import keras
import numpy as np

from mnist_exp.config import AugmentConfig, CNNConfig, TrackingConfig
from mnist_exp.tracking import store as mlflow_store
from mnist_exp.tracking import tracked_model
from mnist_exp.training.models import build_model


def test_logged_model_loads_as_pyfunc_and_predicts_like_the_keras_model(store, mnist, capfd):
    import mlflow

    keras.utils.set_random_seed(0)
    # Batch norm and augmentation layers too: they must survive saving and stay off in predict.
    cfg = CNNConfig(filters=[4], batch_norm=True, dense=8,
                    augment=AugmentConfig(rotation=10, translation=0.1, zoom=0.1))  # fmt: skip
    model = build_model(cfg)
    x = (mnist.x_test[:50].astype(np.float32) / 255)[..., np.newaxis]
    expected = model.predict(x, verbose=0)

    mlflow_store.use_experiment(TrackingConfig(uri=store.uri, artifact_location=str(store.root)))
    with mlflow.start_run() as run:
        seconds = tracked_model.log_model(model, x[:2], expected[:2])
    assert 0 < seconds < 30
    uri = f"runs:/{run.info.run_id}/{tracked_model.MODEL_NAME}"

    info = mlflow.models.get_model_info(uri)
    assert set(info.flavors) == {"keras", "python_function"}
    (tensor,) = info.signature.inputs.inputs
    assert tensor.shape == (-1, 28, 28, 1) and str(tensor.type) == "float32"
    assert info.saved_input_example_info["type"] == "ndarray"
    with open(mlflow.pyfunc.get_model_dependencies(uri)) as f:
        requirements = f.read().split()
    assert f"keras=={keras.__version__}" in requirements
    assert f"mlflow=={mlflow.__version__}" in requirements

    loaded = mlflow.pyfunc.load_model(uri)
    capfd.readouterr()
    np.testing.assert_allclose(np.asarray(loaded.predict(x)), expected, rtol=1e-5, atol=1e-7)
    for batch in (1, 2000):  # one step, and more steps than steps_per_execution
        assert loaded.predict(np.repeat(x[:1], batch, axis=0)).shape == (batch, 10)
    printed = capfd.readouterr()
    assert "━" not in printed.out + printed.err and "step" not in printed.out  # no progress bar
    assert mlflow.keras.load_model(uri).predict(x, verbose=0).shape == (50, 10)  # still Keras
