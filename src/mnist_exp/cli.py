"""What the command-line tools share: one-line errors, and their own options before `--`."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


def fail(message: str) -> NoReturn:
    """End the command with `error: MESSAGE` on stderr and exit code 1, no traceback."""
    raise SystemExit(f"error: {message}")


def options_and_the_rest(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, list[str]]:
    """The command's own options, before `--`, and what follows it to be passed on (Hydra
    overrides, a command to run)."""
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    return parser.parse_args(argv[:split]), argv[split + 1 :]
