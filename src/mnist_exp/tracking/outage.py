"""A tracking server that stops answering mid-run: waited out for a while, then one clear error.

A restart of the server (up to a minute or so) loses nothing: the Keras callback logs each
epoch asynchronously and MLflow retries every request, so training goes on and its logging
catches up. A server gone for longer than its patience (90 s, or MNIST_EXP_SERVER_PATIENCE)
ends the run (and the sweep) with TrackingServerLost, one line that names the server; the runs
it leaves RUNNING there are ended by the next command that opens the experiment once it is
back, and a re-run resumes.

mlflow and keras are imported inside functions: a config error should be reported without them.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time

from mnist_exp.names import SERVER_PATIENCE_ENV, SERVER_SEEN_ENV
from mnist_exp.tracking.health import TrackingUnavailable, check_server, health_problem
from mnist_exp.tracking.uris import is_server

log = logging.getLogger(__name__)

DEFAULT_PATIENCE_SECONDS = 90


def patience_seconds() -> int:
    value = os.environ.get(SERVER_PATIENCE_ENV, str(DEFAULT_PATIENCE_SECONDS))
    if not value.isdigit() or int(value) == 0:
        raise TrackingUnavailable(
            f"{SERVER_PATIENCE_ENV}={value!r}: expected a whole number of seconds > 0"
        )
    return int(value)


def retry_settings() -> dict[str, str]:
    """MLflow retries a failed request with exponential backoff: with factor 1, n retries wait
    0, 2, 4, ... 2**(n-1) s, 2**n - 2 s in all. The fewest retries that outlast the patience, so
    a request in flight sees a server restart through (MLflow's own defaults, factor 2, wait 4
    minutes per request, and every later request waits as long again). The timeout bounds a
    server that accepts connections but does not answer."""
    retries = max(1, math.ceil(math.log2(patience_seconds() + 2)))
    return {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    }


class TrackingServerLost(TrackingUnavailable):
    """The tracking server went away mid-run for longer than its patience."""

    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(
            f"MLflow tracking server {uri} stopped answering ({problem}) for over "
            f"{patience_seconds()}s, so this stops here. Once it is back, run the same command "
            "again: finished runs are skipped, the rest train again or resume."
        )
        self.uri = uri


def retry_patiently(uri: str) -> None:
    """MLflow's retry settings for `uri`, unless the user set their own: theirs keep MLflow's
    meaning (MLFLOW_HTTP_REQUEST_MAX_RETRIES=0, no retry of a failed request), and our patience
    still bounds our own waits for the server (before a run, between epochs, before logging)."""
    if is_server(uri):
        for name, value in retry_settings().items():
            os.environ.setdefault(name, value)
        # urllib3 warns at every retry, and MLflow's background logging at every request that
        # ran out of them; the first retry of an outage, wait_for_server, ServerWatch and
        # TrackingServerLost say it in words.
        add_filter_once(RETRY_LOGGER, _RetryAsOneLine(uri))
        logging.getLogger(RETRY_LOGGER).setLevel(logging.WARNING)
        add_filter_once(ASYNC_LOGGER, _QuietWhileAway(uri))


RETRY_LOGGER = "urllib3.connectionpool"
ASYNC_LOGGER = "mlflow.utils.async_logging.async_logging_queue"


def add_filter_once(logger_name: str, new: logging.Filter) -> None:
    logger = logging.getLogger(logger_name)
    if not any(type(f) is type(new) for f in logger.filters):
        logger.addFilter(new)


class _RetryAsOneLine(logging.Filter):
    """A request MLflow retries through a whole restart never reaches our own checks, so
    without this the sweep would stand still for as long with nothing said."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        retrying = str(record.msg).startswith("Retrying")
        if retrying and not _said_away and not has_given_up():
            problem = health_problem(self.uri, timeout=2)
            if problem is not None:
                say_away(self.uri, problem, "its requests are retried")
        return False


class _QuietWhileAway(logging.Filter):
    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri

    def filter(self, record: logging.LogRecord) -> bool:
        return has_given_up() is False and health_problem(self.uri, timeout=2) is None


def wait_for_server(uri: str) -> None:
    """Return once the server at `uri` answers. One this process has not used yet fails at once
    (a typo, a server not started); one it has used gets patience_seconds() to come back."""
    if os.environ.get(SERVER_SEEN_ENV) != uri:
        check_server(uri)
        os.environ[SERVER_SEEN_ENV] = uri
        return
    while still_away(uri, "waiting for it"):
        time.sleep(2)


def wait_if_away() -> None:
    """Before a run logs its results: a server that went away while it trained gets what is
    left of its patience, rather than a fresh 2 minutes of retries for each request."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if is_server(uri):
        while still_away(uri, "waiting for it"):
            time.sleep(2)


# When this process's own checks found the server away, while it still is; shared by the checks
# above and the Keras callback below, so that the patience counts from the start of the outage.
_away_since: float | None = None
# Whether this outage's line is out. Kept apart from the clock: a request MLflow retried through
# an outage says so without starting it, since nothing sees such an outage end, and a clock left
# running would give up at once on the next one.
_said_away = False


def still_away(uri: str, meanwhile: str) -> bool:
    """Whether the server is away; gives up (raises) once it has been for patience_seconds()."""
    global _away_since, _said_away
    problem = health_problem(uri, timeout=2)
    if problem is None:
        if _said_away:
            log.info("MLflow server %s is back; logging catches up", uri)
        _away_since, _said_away = None, False
        return False
    if _away_since is None:
        _away_since = time.monotonic()
        say_away(uri, problem, meanwhile)
    elif time.monotonic() - _away_since > patience_seconds():
        raise given_up(uri, problem)
    return True


def say_away(uri: str, problem: str, meanwhile: str) -> None:
    global _said_away
    if not _said_away:
        _said_away = True
        log.warning("MLflow server %s is not answering (%s); %s, for up to %ds", uri, problem,
                    meanwhile, patience_seconds())  # fmt: skip


# The server this process gave up on; its own state, never read from MLflow's variables (a
# user's MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 once left every sweep's parent run RUNNING).
_given_up_on: str | None = None


def given_up(uri: str, problem: str) -> TrackingServerLost:
    """The error to stop with. Every MLflow request after it fails at once (MLflow's own
    setting, for what is left of this process), so that nothing (ending the run, the sweep's
    summary, MLflow's exit handler) waits out its retries."""
    global _given_up_on
    _given_up_on = uri
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    return TrackingServerLost(uri, problem)


def lost_server(err: BaseException) -> TrackingServerLost | None:
    """What to raise instead of `err` when it happened because the server went away (None when
    the server answers, or comes back within its patience: then `err` is the run's own)."""
    import mlflow

    global _said_away
    if isinstance(err, TrackingServerLost):
        return err
    uri = mlflow.get_tracking_uri()
    if not is_server(uri) or not isinstance(err, Exception):
        return None
    problem = health_problem(uri)
    if problem is None:
        return None
    # MLflow has already retried the failed request; with our settings for longer than the
    # patience, with a user's own fewer retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES=0: none) for
    # less, and then the rest of the patience is waited here, as for any outage.
    deadline = time.monotonic() + patience_seconds() - mlflow_retry_seconds()
    if time.monotonic() < deadline:
        say_away(uri, problem, "waiting for it")  # unless its retries said so already
    while time.monotonic() < deadline:
        time.sleep(2)
        problem = health_problem(uri, timeout=2)
        if problem is None:
            log.info("MLflow server %s is back", uri)
            _said_away = False
            return None
    return given_up(uri, problem)


def mlflow_retry_seconds() -> float:
    """How long MLflow retries a request that cannot connect, from its own settings (theirs or
    ours) as it reads them: urllib3 waits factor * 2**(k-1) s, at most 120, before retry k > 1."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    )

    factor = MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    retries = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    return sum(min(120.0, factor * 2 ** (k - 1)) for k in range(2, retries + 1))


def has_given_up() -> bool:
    return _given_up_on is not None


def exit_now(code: int) -> None:
    """Exit without Python's exit handlers once the server is given up on: MLflow's would wait
    out the retries of every epoch still queued for it, minutes more."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def server_watch():
    """A Keras callback that ends the fit when the server has been away too long. Each epoch's
    metrics are logged in the background, so without it training would go on for hours with
    nothing recorded."""
    import keras
    import mlflow

    class ServerWatch(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.uri = mlflow.get_tracking_uri()

        def on_epoch_end(self, epoch, logs=None):
            if is_server(self.uri):
                still_away(self.uri, "training goes on and its logging is retried")

    return ServerWatch()
