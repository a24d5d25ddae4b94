"""Who runs each run (host, pid), and ending the RUNNING runs whose process is gone.

A process that is killed outright (`kill -9`, the OOM killer, a reboot) cannot end its own run,
so the run would stay RUNNING for good. Each run records the host and process that run it; any
later run, sweep, comparison or server on that host ends the ones whose process no longer exists
as FAILED, with a note saying why. Runs recorded on another host are left alone: from here we
cannot tell whether their process lives.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from pathlib import Path
from typing import Any

from mnist_exp.names import NOTE_TAG

log = logging.getLogger(__name__)

HOST_TAG = "host"
PID_TAG = "pid"
# The process's start (boot id and start time): a pid the OS reused after the run's process died
# names a different process, and after a reboot every pid does.
PROCESS_TAG = "process_start"
# Set on a run ended here, saying which process was gone and who noticed.
ORPHANED_TAG = "orphaned"


def process_start(pid: int) -> str | None:
    """The boot id and start time of process `pid` (Linux), None where /proc cannot tell."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 of stat is the start time; the command name (field 2) may hold spaces, so count
    # from the ')' that closes it: field 3 is the first one after it.
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"


def this_process() -> dict[str, str]:
    """The tags that say which process runs a run."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    started = process_start(os.getpid())
    return {**tags, PROCESS_TAG: started} if started else tags


def process_is_gone(tags: dict[str, str]) -> bool:
    """True when the process recorded in a run's tags no longer exists on this host."""
    pid = int(tags[PID_TAG])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process: it exists
    recorded = tags.get(PROCESS_TAG)
    return recorded is not None and process_start(pid) not in (None, recorded)


def end_orphaned_runs(client: Any, experiment_ids: list[str]) -> list[str]:
    """End FAILED the RUNNING runs of these experiments whose process on this host is gone;
    their run ids."""
    host = socket.gethostname()
    running = client.search_runs(
        experiment_ids,
        filter_string=f"attributes.status = 'RUNNING' and tags.{HOST_TAG} = '{host}'",
        max_results=1000,
    )
    ended = []
    for run in running:
        tags = run.data.tags
        if PID_TAG not in tags or not process_is_gone(tags):
            continue
        now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        note = (
            f"Ended FAILED: its process {tags[PID_TAG]} on {host} no longer exists (killed, "
            f"out of memory or a restart) and left it RUNNING. Noticed by process {os.getpid()} "
            f"at {now}. Running the same config again resumes it from its checkpoint, if any."
        )
        client.set_tag(run.info.run_id, ORPHANED_TAG, note)
        if not tags.get(NOTE_TAG):
            client.set_tag(run.info.run_id, NOTE_TAG, note)
        client.set_terminated(run.info.run_id, "FAILED")
        log.warning("Run %s (%s): %s", run.info.run_id, run.info.run_name, note)
        ended.append(run.info.run_id)
    return ended


def end_orphans_in_experiment(experiment_id: str) -> list[str]:
    """end_orphaned_runs for the current tracking URI's experiment."""
    from mlflow import MlflowClient

    return end_orphaned_runs(MlflowClient(), [experiment_id])


def end_orphans_in_store(uri: str) -> list[str]:
    """end_orphaned_runs for every experiment of the store or server at `uri`."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    return end_orphaned_runs(client, experiments) if experiments else []
