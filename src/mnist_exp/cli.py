"""What the command-line tools share: one-line errors, and `kill` handled like Ctrl-C."""

from __future__ import annotations

from typing import NoReturn


def fail(message: str) -> NoReturn:
    """End the command with `error: MESSAGE` on stderr and exit code 1, no traceback."""
    raise SystemExit(f"error: {message}")


def stop_on_sigterm(signum, frame) -> NoReturn:
    # `kill` and job schedulers send SIGTERM: handled like Ctrl-C, so what was running is
    # recorded KILLED (or a server stopped) rather than dropped mid-write.
    raise KeyboardInterrupt("SIGTERM")
