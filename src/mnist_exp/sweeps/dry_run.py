"""dry_run=true: what a run, or each job of a sweep, would do and about how long, with nothing
recorded and nothing trained.

Each job prints one line: `train`, `skip` (with the FINISHED run that has done it) or `resume`
(with the run and the epoch it continues from), and an estimate from the finished runs of the
same variant (the same config but for the seed) in the store, where there are any. The sweep
ends with the sum. The store is only read: a store that does not exist yet holds no runs.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from mnist_exp.config import Config
from mnist_exp.identity import variant_id
from mnist_exp.names import VARIANT_TAG
from mnist_exp.tracking import orphans, runs, store
from mnist_exp.tracking.health import TrackingUnavailable

log = logging.getLogger("mnist_exp")


def open_read_only(typed: Config) -> bool:
    """Point MLflow at the store and experiment without creating either; False when there is
    no such experiment (so nothing to skip or resume, and nothing to estimate from)."""
    import mlflow

    try:
        store.use_store(typed.tracking.uri)
    except TrackingUnavailable:
        return False
    found = mlflow.get_experiment_by_name(typed.tracking.experiment)
    if found is None:
        return False
    mlflow.set_experiment(experiment_id=found.experiment_id)
    return True


def variant_seconds(config: dict[str, Any]) -> tuple[float, int]:
    """The mean wall time of the FINISHED runs of this config's variant, and how many."""
    import mlflow

    done = mlflow.search_runs(
        filter_string=f"tags.{VARIANT_TAG} = '{variant_id(config)}' and "
        "attributes.status = 'FINISHED'",
        max_results=100,
        output_format="list",
    )
    seconds = [(r.info.end_time - r.info.start_time) / 1000 for r in done if r.info.end_time]
    return (sum(seconds) / len(seconds), len(seconds)) if seconds else (math.nan, 0)


def resumable_from(typed: Config, latest: Any) -> int | None:
    """The epoch a KILLED or FAILED run would resume after, from its checkpoint; None if none.
    A RUNNING run whose process is gone counts: the real run ends it FAILED first."""
    if latest is None:
        return None
    lost = latest.info.status == "RUNNING" and orphans.process_is_gone(latest.data.tags)
    if latest.info.status not in ("KILLED", "FAILED") and not lost:
        return None
    if not typed.tracking.checkpoint_dir or typed.tracking.rerun:
        return None
    # Not at the top: it imports Keras.
    from mnist_exp.training.checkpoint import Checkpoint, CheckpointUnreadable

    found = Checkpoint(os.path.join(typed.tracking.checkpoint_dir, latest.info.run_id))
    if not found.exists():
        return None
    try:
        found.verify()
    except CheckpointUnreadable:
        return 0  # the real run moves it aside and trains this run again from epoch 0
    return found.completed_epochs()


def plan(typed: Config, config: dict[str, Any], name: str) -> tuple[str, float]:
    """What this run would do, in words, and its estimated seconds (0 to skip, NaN unknown)."""
    if not open_read_only(typed):
        return f"{name}: train (no finished run like it to time)", math.nan
    done = None if typed.tracking.rerun else runs.finished_run_like(config)
    if done is not None:
        return f"{name}: skip, FINISHED as run {done.info.run_id}", 0.0
    seconds, like = variant_seconds(config)
    latest = runs.latest_run_like(config)
    after = resumable_from(typed, latest)
    if after is not None:
        seconds *= max(0, typed.train.epochs - after) / typed.train.epochs
        action = f"resume run {latest.info.run_id} after epoch {after}"
    else:
        action = "train"
    if math.isnan(seconds):
        return f"{name}: {action} (no finished run like it to time)", seconds
    return f"{name}: {action}, about {seconds:.0f} s (from {like} finished run(s) like it)", seconds


def report(typed: Config, config: dict[str, Any], name: str, position: int | None) -> float:
    """Print the plan of this run (job `position` of a sweep); its estimated seconds."""
    line, seconds = plan(typed, config, name)
    prefix = "" if position is None else f"[job {position + 1}] "
    log.info("Dry run: %s%s", prefix, line)
    return seconds


def total(estimates: list[float]) -> str:
    """The sweep's sum, saying how many jobs could not be timed."""
    known = [s for s in estimates if not math.isnan(s)]
    unknown = len(estimates) - len(known)
    text = f"Dry run: {len(estimates)} job(s), about {sum(known):.0f} s"
    if unknown:
        text += f" plus {unknown} job(s) with no finished run like them to time"
    return text + "; nothing was recorded or trained."
