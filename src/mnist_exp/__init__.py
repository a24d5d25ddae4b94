"""mnist-exp: the Keras MNIST tutorial as tracked, sweepable experiments (Hydra + Keras + MLflow)."""
