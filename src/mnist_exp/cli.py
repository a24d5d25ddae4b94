"""What the command-line tools share: one-line errors, `kill` handled like Ctrl-C, and a quick
exit."""

from __future__ import annotations

import atexit
import gc
from typing import NoReturn


def fail(message: str) -> NoReturn:
    """End the command with `error: MESSAGE` on stderr and exit code 1, no traceback."""
    raise SystemExit(f"error: {message}")


def stop_on_sigterm(signum, frame) -> NoReturn:
    # `kill` and job schedulers send SIGTERM: handled like Ctrl-C, so what was running is
    # recorded KILLED (or a server stopped) rather than dropped mid-write.
    raise KeyboardInterrupt("SIGTERM")


def exit_quickly() -> None:
    """Once every exit handler has run, keep Python's garbage collector from going through the
    libraries' objects as the interpreter tears down: a process that has imported MLflow's
    server, Hydra and SciPy took 1.3 s to exit after its last handler, 0.1 s with them frozen
    (bench/RESULTS.md). Call first thing: exit handlers run last-registered first."""
    atexit.register(gc.freeze)
