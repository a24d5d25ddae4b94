"""The Python API: one tracked run, or a sweep, from a notebook or a script, as the CLI makes them.

    import mnist_exp

    run = mnist_exp.run_experiment(["model.hidden=256", "train.epochs=5"])
    run.metrics["test_accuracy"], run.run_id, run.model    # run.model: the trained keras.Model
    sweep = mnist_exp.run_sweep(["model.hidden=32,64,128"])
    sweep.table                                            # one row per run, best first

Overrides are the command line's. `run_experiment` composes them with Hydra's compose API,
validates them as `python -m mnist_exp.run` does, and prepares and records the run with the same
code (tracked_run.prepare, then tracked_run.train_and_log), so MLflow cannot tell the two apart.
`run_sweep` runs that very command with `--multirun` in a child process, so a sweep validates
every job first, skips what has already finished, keeps a failure to its own run and can use any
launcher; its output streams into the notebook as it comes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from mnist_exp import tracked_run
from mnist_exp.composition import compose_overrides
from mnist_exp.config import Config, ConfigError, validate
from mnist_exp.errors import UserError
from mnist_exp.identity import plain_dict, run_name
from mnist_exp.names import SKIPPED_TAG
from mnist_exp.tracking import queries, store

# The line sweeps.parent_run.SweepParentRun logs when it opens a sweep's parent run.
PARENT_RUN_LINE = re.compile(r"Sweep parent run ([0-9a-f]{32})")


class SweepError(UserError):
    """A sweep that recorded nothing: a bad override, or an unreachable store."""


@dataclass(frozen=True)
class ExperimentRun:
    """One finished run: where MLflow keeps it, what it measured, and the trained model."""

    run_id: str
    name: str
    config: Config
    metrics: dict[str, float]  # test_loss, test_accuracy, fit_seconds
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy, ...
    model: Any  # the trained keras.Model
    link: str  # the run in the MLflow UI

    @property
    def model_uri(self) -> str:
        """For mlflow.pyfunc.load_model and `python -m mnist_exp.predict --model`."""
        return f"runs:/{self.run_id}/model"


@dataclass(frozen=True)
class SweepRun:
    """A sweep's parent run, its outcome, and its runs compared as `python -m mnist_exp.compare`
    compares them."""

    parent_run_id: str
    status: str  # FINISHED, or FAILED when a job failed (its run says why)
    table: Any  # pandas DataFrame: one row per run, best validation accuracy first
    curves: dict[str, list[float]]  # each run's val_accuracy per epoch, by run name
    # pandas DataFrame: one row per variant (a config's seeds as one), best mean first, with its
    # 95 % interval and whether it is tied with the best (docs/comparing.md)
    variants: Any
    verdict: str  # what the variants table found, in words


def compose_config(overrides: Sequence[str] = ()) -> Config:
    """The validated config `python -m mnist_exp.run OVERRIDES` would train; raises ConfigError
    naming every bad key (and Hydra's own error for an unknown key or group)."""
    return validate(_compose(overrides))


def run_experiment(overrides: Sequence[str] = ()) -> ExperimentRun:
    """Train and track one run, as `python -m mnist_exp.run OVERRIDES` does; what it gave.

    A bad override raises before anything loads or trains; a run that fails or is interrupted
    is recorded FAILED or KILLED (traceback in its error.txt) and the exception goes on up.
    """
    cfg = _compose(overrides)
    typed = validate(cfg)
    # As the CLI prepares a run; in a kernel that already has Keras on another backend, one
    # clear error.
    tracked_run.prepare(typed, typed.train.threads)
    name = run_name(typed, list(overrides))
    with _package_log() as log_path:
        trained = tracked_run.train_and_log(
            typed, plain_dict(cfg), name, typed.train.threads, log_path
        )
    import mlflow

    link = queries.run_link(mlflow.get_run(trained.run_id))
    return ExperimentRun(trained.run_id, name, typed, trained.metrics, trained.history,
                         trained.model, link)  # fmt: skip


def run_sweep(overrides: Sequence[str], echo: bool = True) -> SweepRun:
    """Run `python -m mnist_exp.run --multirun OVERRIDES` and compare its runs.

    Its output is printed as it comes (echo=False: kept quiet). Interrupting the kernel stops the
    sweep as Ctrl-C would (the running job recorded KILLED). Raises SweepError, with the
    command's own message, when the sweep recorded nothing.
    """
    # The store to read the results from; also fails fast on a bad non-swept override.
    tracking_cfg = compose_config(_fixed(overrides)).tracking
    command = [sys.executable, "-m", "mnist_exp.run", "--multirun", *overrides]
    output = _stream(command, echo)
    found = PARENT_RUN_LINE.findall(output)
    import mlflow
    import pandas as pd

    # Not at the top: they import pandas and scipy, which a single run does without.
    from mnist_exp import run_table
    from mnist_exp.sweeps import variants

    if found:
        store.use_store(tracking_cfg.uri)
    parent = mlflow.get_run(found[-1]) if found else None
    if parent is None or parent.info.lifecycle_stage == "deleted":  # deleted: no job ran
        last_lines = "\n".join(output.strip().splitlines()[-15:])
        raise SweepError(f"the sweep recorded no runs; it said:\n{last_lines}")
    # Its own child runs, and the runs that had already done the jobs it skipped.
    skipped = [key.removeprefix(SKIPPED_TAG) for key in parent.data.tags
               if key.startswith(SKIPPED_TAG)]  # fmt: skip
    wanted = queries.children_filter(parent.info.run_id)
    runs = mlflow.search_runs([parent.info.experiment_id], filter_string=wanted)
    if skipped:
        ids = ", ".join(f"'{run_id}'" for run_id in skipped)
        earlier = mlflow.search_runs([parent.info.experiment_id],
                                     filter_string=f"attributes.run_id IN ({ids})")  # fmt: skip
        runs = pd.concat([runs, earlier], ignore_index=True)
    curves = run_table.validation_history(runs)
    table = run_table.comparison_table(runs, curves)
    named = dict(zip(table.run_id, table.run, strict=True))
    by_variant = variants.summarise(run_table.finished_seeds(table, runs))
    return SweepRun(parent.info.run_id, parent.info.status, table,
                    {named[r]: curves[r] for r in table.run_id}, by_variant,
                    variants.verdict(by_variant))  # fmt: skip


def _compose(overrides: Sequence[str]) -> DictConfig:
    sweeps = [o for o in OverridesParser.create().parse_overrides(list(overrides))
              if o.is_sweep_override()]  # fmt: skip
    if sweeps:
        raise ConfigError(
            f"{sweeps[0].input_line}: a sweep (several values) is for run_sweep, not "
            "run_experiment (or compose_config); give one value"
        )
    return compose_overrides(overrides)


def _fixed(overrides: Sequence[str]) -> list[str]:
    """The overrides that are the same for every job of a sweep (Hydra's own parser decides)."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [o.input_line for o in parsed if not o.is_sweep_override()]


def _stream(command: list[str], echo: bool) -> str:
    """Run `command`, printing its output line by line as it comes; all of it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    lines = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)  # fmt: skip
    try:
        for line in process.stdout:
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
        process.wait()
    except KeyboardInterrupt:
        # As Ctrl-C in a terminal: the sweep records the running job KILLED and ends itself.
        process.send_signal(signal.SIGINT)
        process.wait()
        raise
    return "".join(lines)


@contextlib.contextmanager
def _package_log() -> Iterator[Path]:
    """The package's log lines (MNIST source, run link, ...) shown and kept for the run's
    run.log, as Hydra's logging does for a command-line run."""
    logger = logging.getLogger("mnist_exp")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.log"
        handlers: list[logging.Handler] = [logging.FileHandler(path)]
        if not logging.getLogger().handlers:  # a notebook: nothing would show INFO lines
            handlers.append(logging.StreamHandler(sys.stdout))
        form = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        level = logger.level
        logger.setLevel(logging.INFO)
        for handler in handlers:
            handler.setFormatter(form)
            logger.addHandler(handler)
        try:
            yield path
        finally:
            logger.setLevel(level)
            for handler in handlers:
                logger.removeHandler(handler)
                handler.close()
