"""mnist-exp: the Keras MNIST tutorial as tracked, sweepable experiments (Hydra, Keras, MLflow)."""

import os

# Here, before any module of the package imports TensorFlow: its C++ start-up chatter would
# bury our own output (errors still show).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
