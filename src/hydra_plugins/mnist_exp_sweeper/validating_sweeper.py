"""Where Hydra finds the validating sweeper. Hydra instantiates plugins only from classes defined
in the `hydra_plugins` package, so the class is declared here; its code is in mnist_exp.sweeps."""

from mnist_exp.sweeps import validating_sweeper


class ValidatingSweeper(validating_sweeper.ValidatingSweeper):
    pass
