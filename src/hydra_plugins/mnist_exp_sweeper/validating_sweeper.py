"""Where Hydra finds the validating sweeper: it loads plugins only from `hydra_plugins`."""

from mnist_exp.sweeps.validating_sweeper import ValidatingSweeper

__all__ = ["ValidatingSweeper"]
