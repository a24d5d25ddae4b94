"""Add a user to a tracking server that runs with users and passwords (`make ui AUTH=1`), with a
permission on one experiment; the user's credentials go to a file of mode 600 beside the admin's.

python -m mnist_exp.users alice EDIT                  # on experiment mnist, server on :5000
python -m mnist_exp.users bob READ --experiment mnist --uri http://127.0.0.1:5001 --store DIR

READ sees the experiment's runs; EDIT also logs runs to it; MANAGE also grants permissions on it.
It runs as the admin, whose credentials the server wrote to STORE/auth/credentials.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_exp.cli import fail
from mnist_exp.names import LOCAL_UI
from mnist_exp.server import DEFAULT_STORE
from mnist_exp.tracking import basic_auth
from mnist_exp.tracking.credentials import as_user
from mnist_exp.tracking.health import TrackingUnavailable, check_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("username")
    parser.add_argument("permission", choices=basic_auth.PERMISSIONS, type=str.upper)
    parser.add_argument("--experiment", default="mnist", help="(default: %(default)s)")
    parser.add_argument("--uri", default=LOCAL_UI, help="the server (default: %(default)s)")
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE,
                        help="the server's store, auth/ in it (default: %(default)s)")  # fmt: skip
    args = parser.parse_args(argv)
    admin = basic_auth.admin_credentials(args.store)
    if not admin.is_file():
        fail(f"no admin credentials in {admin}: start the server with users first (make ui "
             f"AUTH=1, or python -m mnist_exp.server --auth --store {args.store})")  # fmt: skip
    try:
        with as_user(admin):
            check_server(args.uri)
        path = basic_auth.add_user(args.uri, args.store, args.username, args.permission,
                                   args.experiment)  # fmt: skip
    except TrackingUnavailable as err:
        fail(str(err))
    except Exception as err:  # noqa: BLE001 - MLflow's REST errors: a user that exists, ...
        # Its first sentence: the rest is the server's SQL, with the password's hash in it.
        reason = str(getattr(err, "message", err)).splitlines()[0].split(" Error: ")[0]
        fail(f"{args.uri} did not add user '{args.username}': {reason}")
    print(f"User '{args.username}' has {args.permission} on experiment '{args.experiment}'; "
          f"credentials in {path} (mode 600), for them alone", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
