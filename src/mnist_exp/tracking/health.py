"""Whether the store answers: the error every store problem is, and a server's health check."""

from __future__ import annotations

import urllib.error
import urllib.request

from mnist_exp.errors import UserError


class TrackingUnavailable(UserError):
    """The store or server cannot be used; raised before any training, so nothing is lost."""


def health_problem(uri: str, timeout: float = 5.0) -> str | None:
    """Why the MLflow server at `uri` does not answer its health check; None when it does."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            response.read()
            return None if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as err:
        return str(getattr(err, "reason", err))


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a server is not there."""
    problem = health_problem(uri, timeout)
    if problem is not None:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({problem}). Start one (`make ui` "
            "serves the local store), fix tracking.uri / MLFLOW_TRACKING_URI, or unset both to "
            "use the local SQLite store."
        )
