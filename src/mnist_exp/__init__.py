"""mnist-exp: the Keras MNIST tutorial as tracked, sweepable Hydra + MLflow experiments."""
