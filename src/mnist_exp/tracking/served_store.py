"""A local SQLite store served by this process to its own worker processes, so that one process
alone writes the file while several train at once.

SQLite takes one writer at a time, and processes that open a store together race on its schema
(store.schema_lock); an `mlflow server` in front of it costs a process and seconds to start.
MLflow's own tracking app, in a thread of the launching process on 127.0.0.1, does the same job
with neither. Workers learn of it from two environment variables; to them the served store is
still the local store (tracking.uris), so links, logging and checks behave as for SQLite.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from mnist_exp.names import SERVED_AT_ENV, SERVED_STORE_ENV
from mnist_exp.tracking.loopback import HOST

log = logging.getLogger(__name__)

# What `mlflow server` hands its app through the environment (mlflow.server._run_server).
_BACKEND_STORE_ENV = "_MLFLOW_SERVER_FILE_STORE"
_ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"


class Serving:
    """A store served on a socket that is bound, so its address can be handed out, before the
    app that answers on it is made and started (`start`): processes forked before that inherit
    a process with no thread of ours running, which is what makes forking safe, and they can
    import what they need while MLflow's server modules load here (0.7 s). Their connections
    wait in the socket's queue until then."""

    def __init__(self, uri: str | None = None, artifact_root: str | None = None) -> None:
        self.uri, self.artifact_root = uri, artifact_root
        self.socket: socket.socket | None = None
        self.server: Any = None
        self.thread: threading.Thread | None = None
        if uri is not None:
            self.socket = socket.socket()
            self.socket.bind((HOST, 0))
            self.socket.listen(64)

    @property
    def env(self) -> dict[str, str]:
        """What a worker process needs to log through this store (tracking.uris)."""
        if self.socket is None:
            return {}
        address = f"http://{HOST}:{self.socket.getsockname()[1]}"
        return {SERVED_STORE_ENV: str(self.uri), SERVED_AT_ENV: address}

    def start(self) -> None:
        if self.socket is None or self.thread is not None:
            return
        app = _tracking_app(str(self.uri), self.artifact_root)
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, *args, **kwargs) -> None:  # one line per request otherwise
                pass

        self.server = make_server(HOST, 0, app, threaded=True, request_handler=Quiet,
                                  fd=self.socket.fileno())  # fmt: skip
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.1,), name="mnist-exp-store", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        if self.thread is not None:
            self.server.shutdown()
            self.thread.join(timeout=10)
        if self.server is not None:
            self.server.server_close()
        if self.socket is not None:
            self.socket.close()


def _tracking_app(uri: str, artifact_root: str | None) -> Any:
    """MLflow's tracking app over the store at `uri`, its store made now and kept."""
    os.environ[_BACKEND_STORE_ENV] = uri
    if artifact_root:
        os.environ[_ARTIFACT_ROOT_ENV] = artifact_root
    try:
        with warnings.catch_warnings():  # Starlette's deprecation of a module MLflow imports
            warnings.filterwarnings("ignore", message="starlette.middleware.wsgi is deprecated")
            # `app` sets its security checks up from the variables. Its run searches import the
            # auth app (a no-op without its config), and with it the module that warns: here,
            # under the filter, not later in a request's thread.
            from mlflow.server import app, auth, handlers  # noqa: F401

            # The app's store, made now and kept, so that the variables can go: in a client
            # process (a worker spawned later) they make MLflow import its server modules.
            handlers._get_tracking_store(uri, artifact_root)
    finally:
        for name in (_BACKEND_STORE_ENV, _ARTIFACT_ROOT_ENV):
            os.environ.pop(name, None)
    return app


@contextlib.contextmanager
def served(uri: str, artifact_root: str | None) -> Iterator[Serving]:
    """Serve the store at `uri` on 127.0.0.1 from `start()` until the block ends. Processes
    started inside the block inherit `Serving.env` and log to `uri` through it."""
    serving = Serving(uri, artifact_root)
    os.environ.update(serving.env)
    try:
        yield serving
    finally:
        for name in serving.env:
            os.environ.pop(name, None)
        serving.stop()
