"""Ctrl-C and `kill` end the work even when Python drops the KeyboardInterrupt they raise.

Python raises it wherever the main thread happens to be. Inside a garbage-collector callback or
a `__del__` (JAX runs one at every collection) it is only printed as "Exception ignored in ..."
and the work goes on: a sweep interrupted at that moment trained its next job to the end. So the
handler here also remembers the signal, and the long work asks at its safe points (before each
epoch, before each job) whether one came, raising it again there.

A leaf, like mnist_exp.errors: training checks it without knowing who installed the handler.
"""

from __future__ import annotations

import signal
import sys
from typing import NoReturn

_received: signal.Signals | None = None
_print_unraisable = sys.unraisablehook  # Python's, which prints what a callback could not raise


def _stop(signum: int, frame) -> NoReturn:
    """The handler: SIGINT (Ctrl-C) and SIGTERM (`kill`, job schedulers) both end the work as a
    KeyboardInterrupt, so what was running is recorded KILLED rather than dropped mid-write."""
    global _received
    _received = signal.Signals(signum)
    raise _interrupt()


def handle() -> None:
    """Installs `_stop` in this process (from its main thread). SIGINT only where Python's own
    handler has it: a process started with Ctrl-C ignored (in the background) keeps ignoring it."""
    global _print_unraisable
    signal.signal(signal.SIGTERM, _stop)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _stop)
    if sys.unraisablehook is not _quiet_about_interrupts:
        _print_unraisable = sys.unraisablehook
        sys.unraisablehook = _quiet_about_interrupts


def raise_if_received() -> None:
    """Raises the interrupt again if a signal came (and was perhaps swallowed) since `handle`
    installed it: the process is on its way out, whatever caught it."""
    if _received is not None:
        raise _interrupt()


def _quiet_about_interrupts(unraisable) -> None:
    # A swallowed interrupt is raised again at the next safe point, and the command then says
    # in one line what stopped it: the stack of the callback it landed in is noise.
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        _print_unraisable(unraisable)


def _interrupt() -> KeyboardInterrupt:
    # The message names a kill; Ctrl-C's is empty, as Python's own (run.py prints which it was).
    return KeyboardInterrupt("SIGTERM" if _received is signal.SIGTERM else "")
