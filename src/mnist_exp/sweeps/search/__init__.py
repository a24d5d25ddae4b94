"""The search: Optuna's ask/tell behind a Hydra sweeper, its space, its study and its trials."""
