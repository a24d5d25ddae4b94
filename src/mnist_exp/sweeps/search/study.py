"""A search's Optuna study: where it is kept, what it counts as done, and what it leaves behind.

The study lives in Optuna's RDB storage (by default `optuna.db` beside the MLflow store), so
that it outlives the command (run it again and it goes on) and so that jobs in other processes
reach it: each job reports its epochs there and the pruner reads everyone's from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_exp.config import PROJECT_ROOT
from mnist_exp.identity import is_hyperparameter
from mnist_exp.names import STUDY_TAG, TRIAL_TAG
from mnist_exp.sweeps.search.space import study_path
from mnist_exp.tracking.runs import note_skipped
from mnist_exp.tracking.uris import sqlite_path, sqlite_uri

log = logging.getLogger(__name__)

STUDY_FILE = "optuna.db"
# Several processes (the sweeper, joblib workers) write one SQLite file; SQLite lets one write at
# a time, so each waits up to this long for the lock rather than failing `database is locked`.
SQLITE_TIMEOUT_SECONDS = 120
# A trial whose job never ended (Ctrl-C, a crash): failed, but not a result of its params.
INTERRUPTED_ATTR = "interrupted"
IMPORTANCE_FIGURE = "param_importances.png"
RESULTS_FILE = "optimization_results.yaml"


def default_storage(tracking_uri: str) -> str:
    """optuna.db beside a local MLflow store; in the project's mlruns/ when runs go to a server."""
    db = sqlite_path(tracking_uri)
    folder = db.parent if db is not None else PROJECT_ROOT / "mlruns"
    return sqlite_uri(folder / STUDY_FILE)


def default_study_name(
    experiment: str, overrides: list[str], custom: str | None, sweeper: DictConfig
) -> str:
    """The same search (space, fixed overrides, custom space, sampler, pruner) is the same
    study, so the same command again continues it; change any of them and a new study starts.
    What is not a hyperparameter (where runs are recorded, threads, dry_run) is not what is
    searched: the same search with tracking=server, or its dry run, is the same study."""
    searched = sorted(o for o in overrides if is_hyperparameter(o.lstrip("+~").partition("=")[0]))
    definition = {"space": searched, "custom": study_path(custom),
                  "sampler": OmegaConf.to_container(sweeper.sampler),
                  "pruner": OmegaConf.to_container(sweeper.pruner)}  # fmt: skip
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode())
    return f"{experiment}-search-{digest.hexdigest()[:10]}"


def open_storage(url: str) -> Any:
    import optuna

    db = sqlite_path(url)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        engine = {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}}
    else:
        engine = {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def live_trial(study: Any, storage: Any, number: int) -> Any:
    """Trial `number` of the study, to report epochs to or to mark. An Optuna Trial is built from
    the storage's id for it, which the storage's public API looks up by study and number."""
    import optuna

    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    return optuna.trial.Trial(study, trial_id)


def counted(trial: Any) -> bool:
    """Trials that count towards n_trials: finished, pruned, or failed because of their config."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(INTERRUPTED_ATTR)


def give_back(study: Any, storage: Any, trial_number: int) -> None:
    """A trial whose job was interrupted: failed, marked so, and its params queued to run first
    next time, so an interrupted search repeats only the trials that were under way."""
    from optuna.trial import TrialState

    trial = study.trials[trial_number]
    if trial.state != TrialState.RUNNING:
        return
    live_trial(study, storage, trial_number).set_user_attr(INTERRUPTED_ATTR, True)
    study.tell(trial_number, state=TrialState.FAIL)
    study.enqueue_trial(trial.params, skip_if_exists=False)


def recover_interrupted(study: Any, storage: Any) -> int:
    """Give back the trials a crashed search left RUNNING; how many there were."""
    from optuna.trial import TrialState

    stale = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for number in stale:
        give_back(study, storage, number)
    return len(stale)


def link_earlier_trials(study: Any, parent_run_id: str) -> None:
    """A continued search: the runs of the trials already done (finished or pruned) are noted as
    skipped by its parent run, as a re-run sweep notes the jobs it skipped (runs.note_skipped),
    and linked to it where they are another parent's, so its summary and `compare` cover the
    whole study."""
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    ended = (TrialState.COMPLETE, TrialState.PRUNED)
    done = {str(t.number) for t in study.get_trials(deepcopy=False, states=ended)}
    client = MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([experiment_id], f"tags.{STUDY_TAG} = '{study.study_name}'",
                              max_results=10_000)  # fmt: skip
    for run in [r for r in runs if r.data.tags.get(TRIAL_TAG) in done]:
        note_skipped(run)


def results(study: Any) -> dict[str, Any]:
    """What optimization_results.yaml holds: the best trial and how the trials ended."""
    from optuna.trial import TrialState

    states = [t.state for t in study.trials]
    summary = {
        "name": study.study_name,
        "trials": {s.name.lower(): states.count(s) for s in TrialState if states.count(s)},
    }
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        summary.update(best_trial=best.number, best_params=best.params, best_value=best.value)
    return summary


def importance_figure(study: Any) -> Any | None:
    """Optuna's parameter-importance plot (fANOVA); None while too few trials are complete."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna

    try:
        with warnings.catch_warnings():  # "experimental", "few trials per regime"
            warnings.simplefilter("ignore")
            axes = optuna.visualization.matplotlib.plot_param_importances(study)
    except (ValueError, RuntimeError) as err:
        log.warning("No parameter-importance figure: %s", err)
        return None
    figure = axes.figure
    figure.set_size_inches(8, 4)
    figure.tight_layout()
    return figure


def log_to_parent(study: Any, parent_run_id: str, sweep_dir: Path, storage: str) -> dict:
    """The study's verdict into the search's parent run: best params and value, the trial
    counts, optimization_results.yaml and the importance figure."""
    import yaml
    from mlflow import MlflowClient

    summary = results(study)
    client = MlflowClient()
    client.set_tag(parent_run_id, STUDY_TAG, study.study_name)
    client.set_tag(parent_run_id, "optuna_storage", storage)
    for state, count in summary["trials"].items():
        client.log_metric(parent_run_id, f"trials_{state}", count)
    if "best_value" in summary:
        client.log_metric(parent_run_id, "best_val_accuracy", summary["best_value"])
        client.set_tag(parent_run_id, "best_trial", summary["best_trial"])
        for name, value in summary["best_params"].items():
            client.log_param(parent_run_id, f"best.{name}", value)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / RESULTS_FILE).write_text(yaml.safe_dump(summary, sort_keys=False))
    client.log_artifact(parent_run_id, str(sweep_dir / RESULTS_FILE))
    figure = importance_figure(study)
    if figure is not None:
        client.log_figure(parent_run_id, figure, IMPORTANCE_FIGURE)
    return summary


def dry_run(name: str, storage_url: str, n_trials: int, at_once: int, confirm: Any) -> str:
    """What the search would do, asking nothing of the study: the trials done, those it would
    run (interrupted ones first), about how long from the trials that ended, the confirmation."""
    import optuna
    from optuna.trial import TrialState

    db = sqlite_path(storage_url)
    trials = []
    if db is None or db.exists():
        try:
            trials = optuna.load_study(study_name=name, storage=open_storage(storage_url)).trials
        except KeyError:  # no such study in that storage yet
            trials = []
    done = sum(counted(t) for t in trials)
    left = max(0, n_trials - done)
    states = [t.state for t in trials]
    again = [t.number for t in trials if t.state == TrialState.RUNNING]
    ended = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete
    ]
    text = (f"Dry run: study '{name}' ({'new' if not trials else storage_url}): {done} of "
            f"{n_trials} trials done ({states.count(TrialState.PRUNED)} pruned); would run "
            f"{left} more, {at_once} at a time")  # fmt: skip
    if again:
        text += f", the interrupted trial(s) {', '.join(map(str, again))} first"
    if ended and left:
        mean = sum(ended) / len(ended)
        text += f"; a trial took about {mean:.0f} s, so about {mean * left / at_once:.0f} s"
    if confirm.top_k and confirm.seeds:
        text += (
            f"; then the {confirm.top_k} best trials again on {confirm.seeds} fresh seeds "
            f"({confirm.top_k * confirm.seeds} runs, finished ones skipped)"
        )
    return text + ". Nothing was recorded or trained."
