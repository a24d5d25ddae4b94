"""TensorFlow's C++ start-up lines kept off the console, real errors let through.

TensorFlow 2.21 logs through absl, and before absl::InitializeLog() runs every line goes to
stderr whatever TF_CPP_MIN_LOG_LEVEL says: the oneDNN notice, "Could not find cuda drivers", and
on every CPU machine an *error* line, "failed call to cuInit". They come from C++, so Python's
own logging cannot catch them: while TensorFlow loads and first looks for its devices, the
process's stderr (file descriptor 2) goes through a filter that drops those lines and passes
everything else on at once, a crash's last words included.

MNIST_EXP_LIBRARY_LOGS=1 turns the filter off, and with it the package's other quieting
(TF_CPP_MIN_LOG_LEVEL, tf.function's retracing warnings, MLflow's progress bars and links).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

from mnist_exp.names import LIBRARY_LOGS_ENV

CHATTER = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} \S+\s+\d+ \S+:\d+\] .*"  # absl's INFO and WARNING lines
    r"|E\d{4} \S+\s+\d+ cuda_\w+\.cc:\d+\] .*"  # no CUDA driver: every machine without a GPU
    r"|To enable the following instructions: .*"  # the second line of cpu_feature_guard's INFO
)


def library_logs_wanted() -> bool:
    return os.environ.get(LIBRARY_LOGS_ENV, "").strip().lower() in ("1", "true", "yes")


@contextlib.contextmanager
def native_chatter_filtered() -> Iterator[None]:
    """While the block runs, stderr's lines pass through CHATTER's filter, one by one."""
    if library_logs_wanted():
        yield
        return
    sys.stderr.flush()
    console = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not CHATTER.fullmatch(line.decode(errors="replace").rstrip("\r\n")):
                    os.write(console, line)

    forwarder = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(console, 2)  # the pipe's last writer closed: the forwarder reads to its end
        forwarder.join(timeout=10)
        os.close(console)
