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
    """A bound server that answers once `start` is called: workers forked before it starts
    inherit a process with no thread of ours running, which is what makes forking safe."""

    def __init__(self, server: Any = None) -> None:
        self.server, self.thread = server, None

    def start(self) -> None:
        if self.server is not None and self.thread is None:
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


@contextlib.contextmanager
def served(uri: str, artifact_root: str | None) -> Iterator[Serving]:
    """Serve the store at `uri` on 127.0.0.1 from `start()` until the block ends. Processes
    started inside the block (they inherit the environment) log to `uri` through it; the
    connections they open before it starts wait in the socket's queue."""
    from werkzeug.serving import WSGIRequestHandler, make_server

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

            # The app's store, made now and kept, so that the variables go before any worker
            # starts: in a client process they make MLflow import its server modules.
            handlers._get_tracking_store(uri, artifact_root)
    finally:
        for name in (_BACKEND_STORE_ENV, _ARTIFACT_ROOT_ENV):
            os.environ.pop(name, None)

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args, **kwargs) -> None:  # one line per request otherwise
            pass

    serving = Serving(make_server(HOST, 0, app, threaded=True, request_handler=Quiet))
    address = f"http://{HOST}:{serving.server.server_port}"
    os.environ[SERVED_STORE_ENV], os.environ[SERVED_AT_ENV] = uri, address
    try:
        yield serving
    finally:
        for name in (SERVED_STORE_ENV, SERVED_AT_ENV):
            os.environ.pop(name, None)
        serving.stop()
