"""MLflow's basic-auth app in front of our tracking servers: its config and user database in
<store>/auth/, the admin created on first start with a random password, users added with a
permission on an experiment, and each user's credentials in a file of mode 600.

MLflow reads the app's config from the ini file MLFLOW_AUTH_CONFIG_PATH names, and the admin's
first password and the session key from its environment: none of them is on a command line.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path

from mnist_exp.tracking import credentials
from mnist_exp.tracking.uris import sqlite_uri

APP = "basic-auth"
ADMIN = "admin"
PERMISSIONS = ("READ", "EDIT", "MANAGE")
CREDENTIALS_FILE = "credentials"


def auth_dir(store: Path) -> Path:
    return Path(store).resolve() / "auth"


def admin_credentials(store: Path) -> Path:
    return auth_dir(store) / CREDENTIALS_FILE


def user_credentials(store: Path, username: str) -> Path:
    return auth_dir(store) / f"{username}.credentials"


def new_password() -> str:
    # URL-safe characters only: the file is sourced by shells and read by configparser-free code.
    return secrets.token_urlsafe(24)


def _secret_file(path: Path) -> str:
    """A random secret kept in `path` (mode 600), made on first use."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_password())
    return path.read_text().strip()


def server_environment(store: Path, uri: str) -> dict[str, str]:
    """What `mlflow server --app-name basic-auth` needs in its environment for `store`; on first
    use the admin's password is made and written to <store>/auth/credentials."""
    folder = auth_dir(store)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    config = folder / "basic_auth.ini"
    # NO_PERMISSIONS: a user sees the experiments someone granted them (or created), no more.
    config.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {sqlite_uri(folder / 'basic_auth.db')}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Each request's password checked against its scrypt hash costs ~0.1 s of CPU, and a
        # run makes hundreds (every artifact): cached for a minute it was 20 s less per run on
        # two busy cores. Our servers have one worker, where a password changed or a user
        # deleted through the API takes effect at once all the same.
        "auth_cache_ttl_seconds = 60\n"
    )
    admin = admin_credentials(store)
    if not admin.exists():
        credentials.write(admin, ADMIN, new_password(), about=f"MLflow server {uri}: admin")
    password = credentials.read(admin).get(credentials.PASSWORD_ENV, "")
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        # Used only while the admin does not exist yet (its first start); ignored after.
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        # The session key of the app's sign-up form (CSRF), the same across restarts.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret_file(folder / "flask_secret_key"),
    }


def add_user(uri: str, store: Path, username: str, permission: str, experiment: str) -> Path:
    """Create `username` with a random password and `permission` on `experiment` (created if
    new), through the server at `uri` as its admin; returns the user's credentials file."""
    import mlflow

    with warnings.catch_warnings():
        # Importing mlflow.server loads its FastAPI app, and Starlette warns about its WSGI
        # bridge: a server's concern, not this client's.
        warnings.simplefilter("ignore")
        from mlflow.server import get_app_client

    from mnist_exp.tracking.store import CLASSIC_ML_EXPERIMENT

    with credentials.as_user(admin_credentials(store)):
        client = mlflow.MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found
            else client.create_experiment(experiment, tags=CLASSIC_ML_EXPERIMENT)
        )
        auth = get_app_client(APP, tracking_uri=uri)
        password = new_password()
        auth.create_user(username=username, password=password)
        auth.grant_user_permission(username, "experiment", experiment_id, permission)
    about = f"MLflow server {uri}: {username}, {permission} on experiment '{experiment}'"
    return credentials.write(user_credentials(store, username), username, password, about)
