"""Where Hydra finds the together launcher. Hydra instantiates plugins only from classes defined
in the `hydra_plugins` package, so the class is declared here; its code is in mnist_exp.sweeps."""

from mnist_exp.sweeps import together


class TogetherLauncher(together.TogetherLauncher):
    pass
