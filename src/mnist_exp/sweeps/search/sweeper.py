"""A Hydra sweeper that searches with Optuna's ask/tell API, prunes, and refills a slot at once.

hydra-optuna-sweeper asks for a batch of trials, waits for the whole batch, and never hands a job
its trial, so a job cannot report its epochs and nothing can be pruned (hydra#1954). This one
asks for one trial whenever a slot is free, validates the trial's config, hands the job its trial
(storage, study name, trial number: `hydra.sweeper.*`) and launches it on its own; the job reports
val_accuracy per epoch and stops when the pruner says so (mnist_exp.sweeps.search.trial). With
`hydra/launcher=parallel` each slot is a thread that launches one job at a time, so a pruned
trial's worker starts the next trial while the other is still training.

The study is durable (mnist_exp.sweeps.search.study): the same command again continues it up
to n_trials. Hydra uses this class through its subclass in hydra_plugins/mnist_exp_sweeper
(Hydra instantiates plugins only from classes defined in that package).
"""

import logging
import math
import os
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf

from mnist_exp.config import ConfigError
from mnist_exp.errors import PrunedTrial
from mnist_exp.names import PARENT_RUN_ENV
from mnist_exp.sweeps.job import validate_sweep_job
from mnist_exp.sweeps.launchers import jobs_at_once
from mnist_exp.sweeps.search import space as search_space
from mnist_exp.sweeps.search import study

log = logging.getLogger(__name__)


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None  # the same seed proposes the same trials
    n_startup_trials: int = 10  # random trials before TPE models the results
    multivariate: bool = False
    # With trials in parallel: pretend running trials did badly, so two slots differ.
    constant_liar: bool = False


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    # Trials trained to the end before any is pruned: the median must stand on something.
    n_startup_trials: int = 5
    n_warmup_steps: int = 0  # epochs every trial trains before it may be pruned (at least 1)
    interval_steps: int = 1
    n_min_trials: int = 1  # trials that must have reached an epoch before it can prune there


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1  # epochs a trial trains at the least
    max_resource: Any = "auto"  # auto: the epochs of the first trial that trains to the end
    reduction_factor: int = 3


@dataclass
class SuccessiveHalvingPrunerConf:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = 1  # epochs before the first cut ("auto": from the first finished trial)
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0


@dataclass
class ThresholdPrunerConf:
    _target_: str = "optuna.pruners.ThresholdPruner"
    lower: float | None = 0.2  # a trial whose val_accuracy is below this (2x chance) is pruned
    upper: float | None = None
    n_warmup_steps: int = 0


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class SearchSweeperConf:
    _target_: str = "hydra_plugins.mnist_exp_sweeper.search_sweeper.SearchSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    n_trials: int = 20  # in the study in all, counting those of earlier runs of the command
    n_jobs: int | None = None  # trials at once; None: what the launcher runs at once
    storage: str | None = None  # None: optuna.db beside the MLflow store (search.study)
    study_name: str | None = None  # None: named after the search, so a rerun continues it
    params: dict[str, str] | None = None  # key: Hydra sweep syntax (interval, choice, range)
    custom_search_space: str | None = None  # a function(cfg, trial) for conditional params
    trial_number: int | None = None  # set by the sweeper for each job: the trial it trains


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="search", node=SearchSweeperConf, provider="mnist_exp")
for _name, _node in {"tpe": TPESamplerConf, "random": RandomSamplerConf}.items():
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="mnist_exp")
for _name, _node in {"median": MedianPrunerConf, "hyperband": HyperbandPrunerConf,
                     "successive_halving": SuccessiveHalvingPrunerConf,
                     "threshold": ThresholdPrunerConf, "none": NopPrunerConf}.items():  # fmt: skip
    _store.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="mnist_exp")


class SearchSweeper(Sweeper):
    def __init__(self, sampler: Any, pruner: Any, n_trials: int, **settings: Any):
        # Hydra hands them over instantiated (an Optuna sampler and pruner).
        self.sampler, self.pruner, self.n_trials = sampler, pruner, n_trials
        self.settings = settings

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        cfg = self.config
        params = {**(self.settings.get("params") or {})}
        overrides = [f"{k}={v}" for k, v in params.items()] + list(arguments)
        space, fixed = search_space.parse(overrides)
        custom = self.settings.get("custom_search_space")
        self.check = lambda extra: validate_sweep_job(
            self.hydra_context.config_loader, cfg, [*fixed, *extra]
        )
        # Every value the space can take is composed and range-checked before anything trains.
        for extreme in search_space.extremes(space):
            self.check([extreme])

        self.storage = self.settings.get("storage") or study.default_storage(cfg.tracking.uri)
        self.study_name = self.settings.get("study_name") or study.default_study_name(
            cfg.tracking.experiment, overrides, custom, cfg.hydra.sweeper
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = study.open_storage(self.storage)
        self.study = optuna.create_study(
            storage=storage,
            study_name=self.study_name,
            sampler=self._sampler_for(storage),
            pruner=self.pruner,
            direction="maximize",  # val_accuracy (mnist_exp.names.OBJECTIVE)
            load_if_exists=True,
        )
        if given_back := study.recover_interrupted(self.study, storage):
            log.info("%d trial(s) left running by an interrupted search will run again", given_back)
        done = sum(study.counted(t) for t in self.study.get_trials(deepcopy=False))
        remaining = max(0, self.n_trials - done)
        n_jobs = self._slots()
        log.info("Study '%s' in %s: %d of %d trials done, %d to go, %d at a time, pruner %s",
                 self.study_name, self.storage, done, self.n_trials, remaining, n_jobs,
                 type(self.pruner).__name__)  # fmt: skip
        parent = os.environ.get(PARENT_RUN_ENV)
        if parent and done:
            study.link_earlier_trials(self.study, parent)
        sweep_dir = Path(cfg.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, sweep_dir / "multirun.yaml")

        self.space = space
        self.custom = search_space.custom_space(custom) if custom else None
        self.fixed = fixed
        self.running: dict[Future, Any] = {}
        try:
            self._run(remaining, n_jobs)
        except BaseException:
            for trial in self.running.values():
                study.give_back(self.study, storage, trial.number)
            raise
        if parent:
            summary = study.log_to_parent(self.study, parent, sweep_dir, self.storage)
            log.info("Best so far: %s", {k: v for k, v in summary.items() if k != "name"})

    def _sampler_for(self, storage: Any) -> Any:
        """A seeded sampler restarted on a study that has trials would propose its first trials
        again: continue from a seed moved on by the trials already there, still reproducibly."""
        seed = self.config.hydra.sweeper.sampler.get("seed")
        try:
            study_id = storage.get_study_id_from_name(self.study_name)
        except KeyError:
            return self.sampler  # a new study
        ran = len(storage.get_all_trials(study_id, deepcopy=False))
        if seed is None or not ran:
            return self.sampler
        return instantiate(self.config.hydra.sweeper.sampler, seed=seed + ran)

    def _slots(self) -> int:
        return jobs_at_once(self.settings.get("n_jobs") or self.config.hydra.launcher.get("n_jobs"))

    def _run(self, remaining: int, n_jobs: int) -> None:
        if n_jobs == 1:
            # In this thread: the basic launcher runs the job in this process, where Ctrl-C
            # must reach the training to record its run KILLED.
            for _ in range(remaining):
                trial, job = self._ask()
                self.running = {None: trial}
                self._tell(trial, self._launch(trial, job))
                self.running = {}
            return
        self._connect_ray()
        with ThreadPoolExecutor(n_jobs, thread_name_prefix="trial-slot") as slots:
            try:
                while remaining or self.running:
                    while remaining and len(self.running) < n_jobs:
                        trial, job = self._ask()
                        self.running[slots.submit(self._launch, trial, job)] = trial
                        remaining -= 1
                    finished, _ = wait(self.running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        self._tell(self.running.pop(future), future.result())
            except BaseException:
                slots.shutdown(wait=False, cancel_futures=True)
                _stop_joblib_workers()
                raise

    def _connect_ray(self) -> None:
        """hydra-ray-launcher connects to Ray inside each launch(), checking and then calling
        ray.init without a lock: two slots launching at once both call it, and the second fails
        ("Perhaps you called ray.init twice"). Connected once here, the slots find Ray up."""
        ray_cfg = getattr(self.launcher, "ray_cfg", None)
        if ray_cfg is not None:
            from hydra_plugins.hydra_ray_launcher._launcher_util import start_ray

            start_ray(ray_cfg.init)

    def _ask(self) -> tuple[Any, list[str]]:
        trial = self.study.ask()
        if self.custom is not None:
            self.custom(self.config, trial)
        search_space.suggest(trial, self.space)
        job = search_space.as_overrides(trial.params)
        try:
            self.check(job)
        except ConfigError:
            self.study.tell(trial, state=_state("FAIL"))
            raise
        return trial, [*self.fixed, *job, f"hydra.sweeper.storage='{self.storage}'",
                       f"hydra.sweeper.study_name='{self.study_name}'",
                       f"hydra.sweeper.trial_number={trial.number}"]  # fmt: skip

    def _launch(self, trial: Any, job: list[str]) -> Any:
        (returned,) = self.launcher.launch([job], initial_job_idx=trial.number)
        return returned

    def _tell(self, trial: Any, returned: Any) -> None:
        try:
            value = returned.return_value
        except Exception as err:  # the job's own error handling missed it: still one trial
            log.error("Trial %d failed: %s: %s", trial.number, type(err).__name__, err)
            self.study.tell(trial.number, state=_state("FAIL"))
            return
        if isinstance(value, PrunedTrial):
            log.info("Trial %d pruned after epoch %d", trial.number, value.epoch)
            self.study.tell(trial.number, state=_state("PRUNED"))
        elif value is None or math.isnan(value):
            self.study.tell(trial.number, state=_state("FAIL"))
        else:
            self.study.tell(trial.number, value)


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]


def _stop_joblib_workers() -> None:
    """joblib's workers train in other processes, under threads that Ctrl-C does not reach; a
    `kill` of this process alone must not leave them training (their runs end KILLED)."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=False, kill_workers=True)
