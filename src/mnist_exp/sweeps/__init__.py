"""Sweeps: Hydra multiruns as MLflow parent and child runs, and the sweepers that run them."""
