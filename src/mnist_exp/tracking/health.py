"""Whether the store answers: the error every store problem is, a server's health check, and
whether a server with authentication takes our credentials."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

from mnist_exp.errors import UserError
from mnist_exp.names import CREDENTIALS_ENV, PASSWORD_ENV, USERNAME_ENV

# The cheapest request a server with MLflow's basic-auth app answers only for a known user
# (/health is open to everyone); a user without a grant still gets 200 and an empty list.
PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"


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
    refused = auth_problem(uri, timeout)
    if refused is not None:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} refused {refused}. Set {USERNAME_ENV} and "
            f"{PASSWORD_ENV} (`set -a; . <store>/auth/credentials; set +a`, the file the server "
            f"wrote), or {CREDENTIALS_ENV}=<that file>."
        )


def auth_problem(uri: str, timeout: float = 5.0) -> str | None:
    """Who the server refused, and how, when it has authentication and refuses our credentials
    (the ones MLflow's client would send); None when it takes them or has no authentication.
    Without this check MLflow retries a 401 for minutes before it gives up."""
    from mlflow.utils.credentials import read_mlflow_creds

    creds = read_mlflow_creds()
    request = urllib.request.Request(f"{uri.rstrip('/')}{PROBE}")
    if creds.username and creds.password:
        token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return None
    except urllib.error.HTTPError as err:
        if err.code not in (401, 403):
            return None  # not about who we are: MLflow's own request reports it
        who = f"user '{creds.username}'" if creds.username else "a request without credentials"
        why = "wrong username or password" if creds.username else "no credentials set"
        return f"{who} (HTTP {err.code}: {why})"
    except (urllib.error.URLError, OSError):
        return None  # the health check just passed: a blip, which MLflow's retries cover
