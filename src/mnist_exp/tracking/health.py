"""Whether the store answers: the error every store problem is, a server's health check, and
a database's (PostgreSQL, MySQL) connection tried before MLflow's, and whether a server with
authentication takes our credentials."""

from __future__ import annotations

import base64
import socket
import urllib.error
import urllib.request

from mnist_exp.errors import UserError
from mnist_exp.names import CREDENTIALS_ENV, PASSWORD_ENV, USERNAME_ENV
from mnist_exp.tracking.uris import shown

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


# Where a database listens when its URI names no port.
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
# Each driver's own name for how long a connection may take (SQLAlchemy passes it on).
CONNECT_TIMEOUT_ARG = {"psycopg": "connect_timeout", "psycopg2": "connect_timeout",
                       "pg8000": "timeout", "pymysql": "connect_timeout",
                       "mysqldb": "connect_timeout", "mysqlconnector": "connection_timeout",
                       "pyodbc": "timeout"}  # fmt: skip
# What the server says when it refuses whom we are, or the database we named (PostgreSQL's
# words; MySQL's by error code: 1044/1045 access denied, 1049 unknown database).
LOGIN_REFUSED = ("password authentication failed", "no password supplied", "role ",
                 "pg_hba.conf", "access denied")  # fmt: skip
MYSQL_LOGIN_CODES = (1044, 1045, 1698)
MYSQL_NO_DATABASE = 1049


def check_database(uri: str, timeout: float = 10.0) -> None:
    """Fail within 2 x `timeout` seconds, naming host:port and the fix, when a database store
    does not answer or refuses us. MLflow would try 10 times over 100 s (its engine's retries,
    which no setting changes) and then print SQLAlchemy's traceback."""
    import sqlalchemy
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    url = make_url(uri)
    dialect = url.get_backend_name()
    port = url.port or DEFAULT_PORTS.get(dialect)
    address = f"{url.host}:{port}" if url.host else "its local socket"
    where = f"tracking.uri={shown(uri)}"
    if url.host and port:
        try:
            socket.create_connection((url.host, port), timeout=timeout).close()
        except socket.gaierror as err:
            raise TrackingUnavailable(
                f"{where}: the host {url.host} cannot be found ({err.strerror or err}). Fix the "
                "host in tracking.uri."
            ) from None
        except OSError as err:
            reason = err.strerror or str(err) or type(err).__name__
            raise TrackingUnavailable(
                f"{where}: nothing answers at {address} ({reason}). Start the database server "
                "there, or fix the host and port in tracking.uri."
            ) from None
    arg = CONNECT_TIMEOUT_ARG.get(url.get_driver_name())
    connect_args = {arg: int(timeout)} if arg and arg not in url.query else {}
    engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=NullPool)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as err:
        raise refused(where, address, url, err.orig) from None
    finally:
        engine.dispose()


def refused(where: str, address: str, url, err: BaseException) -> TrackingUnavailable:
    """The one line for a database server that answered but would not let us in."""
    code = err.args[0] if err.args and isinstance(err.args[0], int) else None  # MySQL's
    text = str(err.args[1] if code is not None and len(err.args) > 1 else err)
    # libpq: "connection failed: connection to server at ... failed: FATAL:  <reason>", a
    # line per address it tried; the reason is the last one's.
    lines = [line for line in text.splitlines() if line.strip()] or [type(err).__name__]
    reason = lines[-1].rpartition(" failed: ")[2].removeprefix("FATAL:").strip()
    refusal = f"{where}: the database at {address} refused the connection ({reason})."
    if code == MYSQL_NO_DATABASE or ("database" in reason and "does not exist" in reason):
        return TrackingUnavailable(f"{refusal} Create it (CREATE DATABASE {url.database}) or "
                                   "fix the database name in tracking.uri.")  # fmt: skip
    if code in MYSQL_LOGIN_CODES or any(words in reason.lower() for words in LOGIN_REFUSED):
        return TrackingUnavailable(f"{refusal} Fix the user and password in tracking.uri "
                                   "(DIALECT://USER:PASSWORD@HOST:PORT/DB).")  # fmt: skip
    return TrackingUnavailable(
        f"{where}: connecting to the database at {address} failed ({reason}). Check that a "
        f"{url.get_backend_name()} server listens there, and its log; or point tracking.uri at "
        "another store."
    )
