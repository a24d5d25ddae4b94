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
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_exp.config import ConfigError
from mnist_exp.errors import PrunedTrial
from mnist_exp.names import PARENT_RUN_ENV
from mnist_exp.sweeps.job import one_backend_for_search, validate_sweep_job
from mnist_exp.sweeps.launchers import jobs_at_once
from mnist_exp.sweeps.search import confirm, study
from mnist_exp.sweeps.search import space as search_space
from mnist_exp.sweeps.search.settings import SearchSweeperConf  # noqa: F401 (registers them)

log = logging.getLogger(__name__)


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
        fixed = one_backend_for_search(fixed, "model" in space or bool(custom))
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
        if cfg.get("dry_run"):
            log.info("%s", study.dry_run(self.study_name, self.storage, self.n_trials,
                                         self._slots(), cfg.hydra.sweeper.confirm))  # fmt: skip
            return
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
        self.started, self.told = time.monotonic(), 0
        try:
            self._run(remaining, n_jobs)
        except BaseException:
            for trial in self.running.values():
                study.give_back(self.study, storage, trial.number)
            raise
        if parent:
            summary = study.log_to_parent(self.study, parent, sweep_dir, self.storage)
            log.info("Best so far: %s", {k: v for k, v in summary.items() if k != "name"})
        top_k, seeds = cfg.hydra.sweeper.confirm.top_k, cfg.hydra.sweeper.confirm.seeds
        if top_k and seeds:
            self._confirm(top_k, seeds, parent)

    def _confirm(self, top_k: int, seeds: int, parent: str | None) -> None:
        """The best trials again on fresh seeds, as ordinary jobs (a finished one is skipped
        when the search runs again), and the winner by mean."""
        trials = confirm.leaders(self.study, top_k)
        if not trials:
            log.warning("No completed trial to confirm")
            return
        fresh = confirm.fresh_seeds(self.config.seed, seeds)
        jobs = confirm.jobs(trials, self.fixed, fresh)
        log.info("Confirming the %d best trials (%s) on seeds %s: %d runs", len(trials),
                 ", ".join(str(t.number) for t in trials), fresh, len(jobs))  # fmt: skip
        for _, overrides in jobs:
            self.check(overrides[len(self.fixed) :])
        returned = self.launcher.launch(
            [o for _, o in jobs], initial_job_idx=len(self.study.trials)
        )
        values: dict[int, list[float]] = {}
        for (number, _), job in zip(jobs, returned, strict=True):
            try:
                value = job.return_value
            except Exception as err:  # the job's own error handling missed it
                log.error("Confirmation of trial %d failed: %s", number, err)
                value = math.nan
            values.setdefault(number, []).append(value if isinstance(value, float) else math.nan)
        found = confirm.verdict(trials, values)
        log.info("%s", confirm.described(found, seeds))
        if parent:
            confirm.log_to_parent(parent, found)

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
            what = f"pruned after epoch {value.epoch}"
        elif value is None or math.isnan(value):
            self.study.tell(trial.number, state=_state("FAIL"))
            what = "failed (see its run)"
        else:
            self.study.tell(trial.number, value)
            what = f"val {value:.4f}"
        self._progress(trial, what)

    def _progress(self, trial: Any, what: str) -> None:
        """`[trial 5/20] val 0.9712; 4 done (1 pruned), 15 left; about 300 s left`."""
        states = [t.state.name for t in self.study.get_trials(deepcopy=False)]
        counted = sum(study.counted(t) for t in self.study.get_trials(deepcopy=False))
        self.told += 1
        left = max(0, self.n_trials - counted)
        pace = (time.monotonic() - self.started) / self.told
        log.info("[trial %d/%d] %s; %d done (%d pruned), %d left%s", trial.number + 1,
                 self.n_trials, what, counted, states.count("PRUNED"), left,
                 f"; about {pace * left:.0f} s left" if left else "")  # fmt: skip


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]


def _stop_joblib_workers() -> None:
    """joblib's workers train in other processes, under threads that Ctrl-C does not reach; a
    `kill` of this process alone must not leave them training (their runs end KILLED)."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=False, kill_workers=True)
