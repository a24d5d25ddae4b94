"""Hydra's output directory (hydra.run.dir, hydra.sweep.dir) checked before Hydra writes its
config and log there: a full disk or a directory that cannot be written is one line, where
Hydra would print its traceback."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_exp.tracking.full_disk import DiskFull, disk_full

# Room for a job's .hydra/*.yaml and the first lines of its log.
PROBE_BYTES = 256 * 1024


class OutputDirCheck(Callback):
    """Hydra callback, listed first: runs before Hydra creates the run's or sweep's directory."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check("hydra.sweep.dir", config.hydra.sweep.dir)


def check(key: str, directory: str) -> None:
    """Exit with one line unless `directory` takes PROBE_BYTES. Hydra turns a callback's
    exceptions into warnings and goes on, so this exits."""
    probe = Path(directory) / f".space-{os.getpid()}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as file:
            file.write(bytes(PROBE_BYTES))
            file.flush()
            os.fsync(file.fileno())
    except OSError as err:
        full = disk_full(err)
        if full is not None:
            print(DiskFull(directory, full.why, key), file=sys.stderr)
        else:
            print(f"{key}={directory}: cannot write there ({err.strerror or err}); pick a "
                  f"writable directory ({key}=...)", file=sys.stderr)  # fmt: skip
        sys.exit(1)
    finally:
        probe.unlink(missing_ok=True)
