"""A search job's Optuna trial: found again in the shared study, told val_accuracy every epoch,
and stopped at an epoch's end when the pruner says it cannot win.

The sweeper asks the study for a trial and hands its job the study's storage, name and the
trial's number as `hydra.sweeper.*` keys; the pruner's settings travel the same way, in the job's
own copy of `hydra.sweeper.pruner` (Optuna does not keep the pruner in the storage).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from mnist_exp.errors import PrunedTrial
from mnist_exp.names import OBJECTIVE, STUDY_TAG, TRIAL_TAG
from mnist_exp.sweeps.search.study import live_trial, open_storage


def job_trial(sweeper: DictConfig) -> Any | None:
    """This job's live trial, or None when the job is not part of a search."""
    if sweeper.get("trial_number") is None:
        return None
    import optuna
    from hydra.utils import instantiate

    storage = open_storage(sweeper.storage)
    # Optuna does not keep the pruner in the storage, so the job brings its own.
    pruner = instantiate(sweeper.pruner)
    study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=pruner)
    return live_trial(study, storage, sweeper.trial_number)


def trial_tags(trial: Any | None) -> dict[str, str]:
    if trial is None:
        return {}
    return {TRIAL_TAG: str(trial.number), STUDY_TAG: trial.study.study_name}


def pruning_callback(trial: Any) -> Any:
    """optuna-integration's Keras callback, raising our PrunedTrial so the run records the epoch;
    never after the last epoch.

    Goes after MLflow's callback in the list, so the pruned epoch's metrics are logged first.
    """
    import optuna
    from optuna_integration import KerasPruningCallback

    class Pruning(KerasPruningCallback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            # Reported at step = epochs trained (Keras counts from 0): the pruners' resources
            # are then epochs, so SuccessiveHalving's and Hyperband's min_resource=1 judge a
            # trial after its first epoch, not its second.
            trained = epoch + 1
            try:
                super().on_epoch_end(trained, logs)
            except optuna.TrialPruned:
                # After the last epoch a cut saves nothing and would record a trial that
                # trained in full as pruned: it completes, with its last epoch reported.
                if trained < self.params.get("epochs", trained + 1):
                    raise PrunedTrial(trained) from None

    return Pruning(trial, OBJECTIVE)
