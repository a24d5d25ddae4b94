"""Training: MNIST, the models, Keras's backend, fit and evaluate, checkpoints and figures.

It never imports MLflow or Hydra (a contract in pyproject.toml checks it), so that a notebook or
a test can train and plot without them.
"""
