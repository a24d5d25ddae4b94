"""Serve a tracked model over HTTP with MLflow's scoring server, on 127.0.0.1, until Ctrl-C.

python -m mnist_exp.serve --model models:/mnist-best/latest [--port 5001]     (make serve)
python -m mnist_exp.serve --request 0 > digit.json        # the body that sends MNIST test image 0
python -m mnist_exp.serve --request my_digit.png > digit.json
curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' -d @digit.json

The server runs from this virtualenv (`--env-manager local`: nothing is installed, so it works
offline), with the virtualenv's bin/ on PATH, where `mlflow models serve` looks for uvicorn.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from mnist_exp import interrupts, predict
from mnist_exp.cli import fail
from mnist_exp.composition import default_config
from mnist_exp.server import stop_group
from mnist_exp.tracking import store
from mnist_exp.tracking.health import TrackingUnavailable
from mnist_exp.tracking.loopback import HOST

DEFAULT_PORT = 5001  # 5000 is the tracking server's (make ui)


def request_body(images: np.ndarray) -> dict:
    """The scoring server's JSON for (N, 28, 28) images in [0, 1]: the model's signature takes
    a float32 tensor of shape (N, 28, 28, 1) under `inputs`."""
    return {"inputs": np.round(images[..., np.newaxis], 4).tolist()}


def request_for(what: str) -> dict:
    """The request body for MNIST test image N (`what` is a number) or an image file."""
    # stdout is the JSON: what loading MNIST says (a download's progress) goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        if what.lstrip("-").isdigit():
            image, _ = predict.read_test_image(int(what), default_config().data.cache_dir)
        else:
            image = predict.read_image(Path(what))
    return request_body(image[np.newaxis])


def is_serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def check_model(model_uri: str, tracking_uri: str) -> None:
    """Fail in one line, before the server starts, on a model the store does not have."""
    import mlflow

    try:
        store.use_store(tracking_uri)
        mlflow.models.get_model_info(model_uri)
    except TrackingUnavailable as err:
        fail(str(err))
    except (mlflow.exceptions.MlflowException, OSError) as err:
        fail(f"cannot load model '{model_uri}': {str(err).splitlines()[0]}")


def serve(model_uri: str, tracking_uri: str, port: int, start_timeout: float = 180) -> int:
    url = f"http://{HOST}:{port}"
    if is_serving(url):
        fail(f"port {port} already has a server ({url}); stop it or pick --port")
    bin_dir = str(Path(sys.executable).parent)  # the venv's, not resolved: uvicorn lives there
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}  # fmt: skip
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
               "--env-manager", "local", "--host", HOST, "--port", str(port)]  # fmt: skip
    # Its own session: the scoring server runs uvicorn as a child, and stop_group ends both.
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + start_timeout
        while not is_serving(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                fail(f"the scoring server for {model_uri} did not start on {url} (its output "
                     "is above)")  # fmt: skip
            time.sleep(0.5)
        print(f"Serving {model_uri} on {url}/invocations  (Ctrl-C stops it)", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        print("Scoring server stopped", flush=True)
        return 0
    finally:
        stop_group(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="models:/NAME/latest, runs:/ID/model, ...")
    what.add_argument(
        "--request", metavar="N|IMAGE",
        help="print the JSON body that sends MNIST test image N, or an image file",
    )  # fmt: skip
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    parser.add_argument(
        "--tracking-uri", default=default_config().tracking.uri,
        help="where models:/ and runs:/ URIs are looked up (default: %(default)s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.request is not None:
        print(json.dumps(request_for(args.request)))
        return 0
    # Ctrl-C stops it even when started from a script in the background (which ignores SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupts.handle()
    check_model(args.model, args.tracking_uri)
    return serve(args.model, args.tracking_uri, args.port)


if __name__ == "__main__":
    sys.exit(main())
