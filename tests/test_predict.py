"""The predict CLI: real image files of any size and polarity, MNIST test images, bad input."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from mnist_exp.predict import mnist_like
from tests.helpers import LIBRARY_LINES, cli_env


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


def png(path, width: int, height: int, bar: tuple[int, int, int, int] | None = None) -> None:
    """A valid grayscale PNG of any size, black with an optional white bar (left, top, right,
    bottom) for a digit, written row by row: a 12000x12000 one costs this test 140 kB, not the
    144 MB it decodes to."""
    left, top, right, bottom = bar or (0, 0, 0, 0)
    blank = b"\0" + b"\0" * width
    inked = b"\0" + b"\0" * left + b"\xff" * (right - left) + b"\0" * (width - right)
    packer = zlib.compressobj(6)
    data = b"".join(packer.compress(inked if top <= y < bottom else blank) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", data + packer.flush()) + chunk(b"IEND", b""))  # fmt: skip


# Runs a command and writes its peak memory (kB) to a file. A small process of its own: a child
# forked from pytest would count pytest's memory as its own (Linux keeps the high-water mark
# across exec).
PEAK_OF = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(module: str, *args: str, cwd, env) -> tuple[int, str, str, float, int]:
    """`python -m MODULE ARGS`: its exit code, stdout, stderr, seconds, and peak memory in MB."""
    peak = cwd / "peak_kb.txt"
    started = time.monotonic()
    command = [sys.executable, "-c", PEAK_OF, str(peak), sys.executable, "-m", module, *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    return done.returncode, done.stdout, done.stderr, seconds, int(peak.read_text()) // 1024


# Measured on 2 cores of an AMD EPYC (Zen 4): these commands peak at 185 MB (Python, numpy,
# Pillow and our imports) when they refuse a file, and at 205 MB on a 4096x4096 grayscale scan
# (390 MB before it was reduced first); a 12000x12000 image took 1.9 GB before the limit.
PEAK_MB = 300


@pytest.mark.slow  # 6 commands, ~8 s
@pytest.mark.parametrize("tool", ["predict", "serve"])
def test_a_bomb_a_huge_and_a_truncated_image_are_each_one_line_in_bounded_memory(
    tool, tmp_path, mnist_dir
):
    png(tmp_path / "bomb.png", 20000, 10000)  # 200 Mpx: Pillow's own check raises
    png(tmp_path / "huge.png", 12000, 12000)  # 144 Mpx: Pillow only warns, and decodes it
    png(tmp_path / "digit.png", 200, 200, bar=(90, 40, 110, 160))
    whole = (tmp_path / "digit.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(whole[: len(whole) // 2])
    limit = "more than the 4096x4096 (16.8 Mpx) an image may have (MNIST's digits are 28x28)"
    cases = {
        "bomb.png": f"bomb.png: its header announces over 179 Mpx, {limit}",
        "huge.png": f"huge.png: its header announces 12000x12000 pixels, {limit}",
        "truncated.png": "truncated.png: the image cannot be decoded (image file is truncated)",
    }
    for name, message in cases.items():
        # An unknown model: the file is refused before any model could be loaded.
        if tool == "predict":
            args = ["--model", "runs:/0123abc/model", "--image", name]
        else:
            args = ["--request", name]
        code, out, err, seconds, peak = run_measured(f"mnist_exp.{tool}", *args, cwd=tmp_path,
                                                     env=cli_env(mnist_dir))  # fmt: skip
        assert code == 1, err
        assert out == "" and len(err.splitlines()) == 1, err
        assert err.startswith(f"error: {message}"), err
        assert seconds < 20, (name, seconds)  # no TensorFlow, no model: ~2 s here
        assert peak < PEAK_MB, (name, peak)


def test_an_image_at_the_limit_is_read_in_bounded_memory(tmp_path, mnist_dir):
    """4096x4096, the largest allowed: its digit is found, in a fraction of the memory."""
    png(tmp_path / "scan.png", 4096, 4096, bar=(1900, 800, 2200, 3000))
    code, out, err, _, peak = run_measured("mnist_exp.serve", "--request", "scan.png",
                                           cwd=tmp_path, env=cli_env(mnist_dir))  # fmt: skip
    assert code == 0, err
    (image,) = np.asarray(json.loads(out)["inputs"])[..., 0]
    columns = np.nonzero(image.max(axis=0) > 0.5)[0]
    rows = np.nonzero(image.max(axis=1) > 0.5)[0]
    assert len(rows) == 20 and 2 <= len(columns) <= 4, (rows, columns)  # the bar, 20 high
    assert peak < PEAK_MB, peak
