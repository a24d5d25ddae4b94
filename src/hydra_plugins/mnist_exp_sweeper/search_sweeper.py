"""Where Hydra finds the search sweeper: it loads plugins only from `hydra_plugins`."""

from mnist_exp.sweeps.search.sweeper import SearchSweeper

__all__ = ["SearchSweeper"]
