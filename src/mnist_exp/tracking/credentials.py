"""A tracking server's credentials: files of KEY=VALUE lines, mode 600, that a shell can source
(`set -a; . mlruns/auth/credentials; set +a`) and that our processes read into MLflow's own
variables when MNIST_EXP_CREDENTIALS names one. Nothing here ever prints a password."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mnist_exp.names import CREDENTIALS_ENV, PASSWORD_ENV, USERNAME_ENV
from mnist_exp.tracking.health import TrackingUnavailable


def write(path: Path, username: str, password: str, about: str = "") -> Path:
    """The two lines MLflow's clients need, in a file only its owner can read (mode 600 from
    the start: no moment in which another user could open it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as out:
        if about:
            out.write(f"# {about}\n")
        out.write(f"{USERNAME_ENV}={username}\n{PASSWORD_ENV}={password}\n")
    return path


def read(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of a credentials file (comments and blank lines skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise TrackingUnavailable(
            f"{CREDENTIALS_ENV}={path}: cannot read it ({err.strerror or err}); point it at the "
            "credentials file the server wrote (<store>/auth/credentials), or unset it"
        ) from None
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def environment(path: Path) -> dict[str, str]:
    """The variables a process needs to log as the file's user: MLflow's two, and ours naming
    the file (for Ray's tasks)."""
    found = read(path)
    return {key: found[key] for key in (USERNAME_ENV, PASSWORD_ENV) if key in found} | {
        CREDENTIALS_ENV: str(Path(path).resolve())
    }


def load() -> None:
    """MLFLOW_TRACKING_USERNAME / _PASSWORD from the file MNIST_EXP_CREDENTIALS names, unless
    they are set already."""
    path = os.environ.get(CREDENTIALS_ENV)
    if path:
        for key, value in read(Path(path)).items():
            if key in (USERNAME_ENV, PASSWORD_ENV):
                os.environ.setdefault(key, value)


@contextlib.contextmanager
def as_user(path: Path) -> Iterator[None]:
    """This process's MLflow requests made as the file's user while the block runs (MLflow's
    clients take credentials from the environment only)."""
    found = {key: value for key, value in read(path).items() if key in (USERNAME_ENV, PASSWORD_ENV)}
    previous = {key: os.environ.get(key) for key in found}
    os.environ.update(found)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def permission_needed() -> Iterator[None]:
    """A server's 403 on a new run as one line naming who was refused and who can fix it (MLflow
    raises it with its response body, after nothing was recorded)."""
    try:
        yield
    except Exception as err:
        if getattr(err, "error_code", None) != "PERMISSION_DENIED":
            raise
        import mlflow

        user = os.environ.get(USERNAME_ENV) or "(no user)"
        raise TrackingUnavailable(
            f"MLflow tracking server {mlflow.get_tracking_uri()} refused user '{user}' a new run "
            "in this experiment (HTTP 403: READ permission at most). Log as a user with EDIT on "
            "it (python -m mnist_exp.users NAME EDIT adds one), or log to another experiment"
        ) from None
