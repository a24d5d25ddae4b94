"""One worker thread that finishes runs' logging while the next job of a sweep trains.

Work runs in the order it was handed over. Python joins the thread at exit, after all queued work
(also after Ctrl-C, `kill` or an exception, which end the main thread first), and a sweep
flushes it before its parent run ends, so every job that finished training has its artifacts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pending: list[Future] = []


def submit(work: Callable[[], None]) -> None:
    """Run `work` on the worker thread after whatever was handed over before it."""
    global _executor
    with _lock:
        if _executor is None:
            # Not a daemon: concurrent.futures joins its threads at interpreter exit, before
            # atexit handlers such as the sweep's, once their queue is done.
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mnist-exp-logging")
        _pending.append(_executor.submit(work))


def flush() -> None:
    """Wait until everything handed over so far is done. `work` reports its own failures (a run
    ends FAILED); whatever escapes it is logged here, never raised into the next job."""
    with _lock:
        pending = list(_pending)
        _pending.clear()
    if pending and not all(future.done() for future in pending):
        log.info("Finishing the logging of %d run(s) ...", sum(not f.done() for f in pending))
    for future in pending:
        error = future.exception()
        if error is not None:
            log.error("Background logging failed: %s: %s", type(error).__name__, error)
