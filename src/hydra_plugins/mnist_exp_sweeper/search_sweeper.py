"""Where Hydra finds the search sweeper. Hydra instantiates plugins only from classes defined in
the `hydra_plugins` package, so the class is declared here; its code is in mnist_exp.sweeps."""

from mnist_exp.sweeps.search import sweeper


class SearchSweeper(sweeper.SearchSweeper):
    pass
