"""The predict CLI: real image files of any size and polarity, MNIST test images, bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image, ImageOps

from mnist_exp.predict import mnist_like
from tests.helpers import LIBRARY_LINES


def upscaled(digit: np.ndarray, dark_on_light: bool) -> Image.Image:
    """An MNIST digit, 2.5 times as large, off centre in an RGB image 80 wide and 100 high."""
    image = Image.new("L", (80, 100))
    image.paste(Image.fromarray(digit).resize((70, 70), Image.Resampling.BICUBIC), (4, 25))
    return (ImageOps.invert(image) if dark_on_light else image).convert("RGB")


def test_any_size_and_polarity_becomes_an_mnist_like_image(mnist):
    similarity = []
    for digit in mnist.x_test[:20]:
        light = mnist_like(upscaled(digit, dark_on_light=False))
        dark = mnist_like(upscaled(digit, dark_on_light=True))
        assert light.shape == (28, 28) and light.dtype == np.float32
        np.testing.assert_allclose(light, dark, atol=0.02)  # the inverted scan is inverted back
        similarity.append(np.corrcoef(light.ravel(), digit.ravel())[0, 1])
    # Scaled back into a 20x20 box and centred by mass: the original digit, up to resampling
    # (MNIST's own box and anti-aliasing differ a little from ours, more for some digits).
    assert np.mean(similarity) > 0.9 and min(similarity) > 0.7


def test_a_small_off_centre_digit_is_scaled_and_centred(mnist):
    canvas = np.zeros((200, 300), np.uint8)
    canvas[10:38, 250:278] = mnist.x_test[0]  # a 28x28 digit in the top right corner
    image = mnist_like(Image.fromarray(canvas))
    rows, cols = np.nonzero(image > 0.2)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 in (19, 20, 21)  # scaled to MNIST's 20x20 box
    mass = image / image.sum()
    centre = (mass.sum(axis=1) @ np.arange(28), mass.sum(axis=0) @ np.arange(28))
    np.testing.assert_allclose(centre, (13.5, 13.5), atol=1.0)


def test_a_blank_image_has_no_digit():
    with pytest.raises(ValueError, match="no digit found"):
        mnist_like(Image.new("RGB", (50, 50), "white"))


@pytest.fixture(scope="module")
def model_uri(tiny_model_uri: str) -> str:
    return tiny_model_uri


@pytest.fixture(scope="module")
def confident_digit(confident_digits: list[int]) -> int:
    return confident_digits[0]


@pytest.mark.slow
@pytest.mark.parametrize("dark_on_light", [False, True])
def test_predicts_the_digit_in_an_image_file(
    run_tool, tiny_sweep, model_uri, confident_digit, mnist, tmp_path, dark_on_light
):
    path = tmp_path / "digit.png"
    upscaled(mnist.x_test[confident_digit], dark_on_light).save(path)
    done = run_tool("predict", "--model", model_uri, "--image", str(path), store=tiny_sweep)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    probabilities = [float(line.split()[1]) for line in lines[:10]]
    assert [int(line.split()[0]) for line in lines[:10]] == list(range(10))
    assert sum(probabilities) == pytest.approx(1, abs=1e-3)
    label = mnist.y_test[confident_digit]
    assert lines[10].startswith(f"{path}: predicted {label} (p=")
    assert not LIBRARY_LINES.search(done.stdout + done.stderr), done.stderr  # a quiet console


@pytest.mark.slow
def test_checks_one_mnist_test_image_like_the_tutorial(
    run_tool, tiny_sweep, model_uri, confident_digit, mnist
):
    index = str(confident_digit)
    done = run_tool("predict", "--model", model_uri, "--test-index", index, store=tiny_sweep)
    assert done.returncode == 0, done.stderr
    label = mnist.y_test[confident_digit]
    last = done.stdout.splitlines()[-1]
    assert last.startswith(f"MNIST test image {index}: predicted {label} (p=")
    assert last.endswith(f"true label {label} (correct)")


@pytest.mark.slow
def test_predicts_a_folder_of_digits_in_one_call(
    run_tool, tiny_sweep, model_uri, confident_digits, mnist, tmp_path
):
    folder = tmp_path / "scans"
    folder.mkdir()
    chosen = confident_digits[:8]
    for n, index in enumerate(chosen):  # half of them dark on light, as a scanner gives them
        upscaled(mnist.x_test[index], dark_on_light=n % 2 == 1).save(folder / f"scan{n}.png")
    (folder / "notes.txt").write_text("not an image, and not looked at")
    extra = tmp_path / "extra.jpg"
    upscaled(mnist.x_test[chosen[0]], dark_on_light=True).save(extra)
    out = tmp_path / "predictions.csv"
    done = run_tool("predict", "--model", model_uri, "--image", str(folder), str(extra),
                    "--out", str(out), store=tiny_sweep)  # fmt: skip
    assert done.returncode == 0, done.stderr
    labels = [int(mnist.y_test[i]) for i in [*chosen, chosen[0]]]
    files = [str(folder / f"scan{n}.png") for n in range(len(chosen))] + [str(extra)]
    lines = done.stdout.splitlines()
    assert len(lines) == len(files) + 1  # one per file, then where the CSV went
    for line, path, label in zip(lines[:-1], files, labels, strict=True):
        assert line.startswith(f"{path}: predicted {label} (p="), line
    assert lines[-1] == f"{len(files)} predictions written to {out}"
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["image"] for row in rows] == files
    assert [int(row["predicted"]) for row in rows] == labels
    for row in rows:
        probabilities = [float(row[f"p{d}"]) for d in range(10)]
        assert sum(probabilities) == pytest.approx(1, abs=2e-3)
        assert float(row["probability"]) == max(probabilities)


def assert_one_line_error(done, message: str) -> None:
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {message}", done.stderr
    assert done.stdout == ""


# Input is checked before any store or model is touched, so these need no trained model.
@pytest.mark.parametrize(
    ("args", "message"),
    [(["--image", "missing.png"], "missing.png: no such file"),
     (["--image", "notes.png"], "notes.png: not an image file Pillow can read"),
     (["--image", "blank.png"], "blank.png: no digit found: the image is one flat colour"),
     (["--test-index", "10000"], "--test-index 10000: out of range; MNIST has test images 0..9999"),
     (["--test-index", "-1"], "--test-index -1: out of range; MNIST has test images 0..9999"),
     (["--image", "digit.png", "blank.png"],
      "blank.png: no digit found: the image is one flat colour"),
     (["--image", "empty"], "empty: a folder with no image files (.png, .jpg, .jpeg, .bmp, .gif, "
      ".tif, .tiff, .webp)"),
     (["--image", "digit.png", "--out", "nowhere/p.csv"],
      "--out nowhere/p.csv: no such folder nowhere")],
)  # fmt: skip
def test_bad_input_is_one_clear_line(run_tool, store, tmp_path, args, message, mnist):
    (tmp_path / "notes.png").write_text("not a picture")
    Image.new("L", (30, 30), 255).save(tmp_path / "blank.png")
    Image.fromarray(mnist.x_test[0]).save(tmp_path / "digit.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.txt").write_text("no images here")
    done = run_tool("predict", "--model", "models:/any/1", *args, store=store)
    assert_one_line_error(done, message)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("uri", "reason"),
    [("models:/nope/latest", "Registered Model with name=nope not found"),
     ("runs:/0123abc/model", "Run with id=0123abc not found")],
)  # fmt: skip
def test_unknown_model_is_one_clear_line(run_tool, tiny_sweep, uri, reason):
    done = run_tool("predict", "--model", uri, "--test-index", "0", store=tiny_sweep)
    assert_one_line_error(done, f"cannot load model '{uri}': {reason}")
