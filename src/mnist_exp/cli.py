"""What the command-line tools share: one-line errors."""

from __future__ import annotations

from typing import NoReturn


def fail(message: str) -> NoReturn:
    """End the command with `error: MESSAGE` on stderr and exit code 1, no traceback."""
    raise SystemExit(f"error: {message}")
