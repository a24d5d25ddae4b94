"""Predict digits with a tracked model: from image files or folders, or one MNIST test image.

python -m mnist_exp.predict --model models:/mnist-best/latest --image digit.png
python -m mnist_exp.predict --model models:/mnist-best/latest --image scans/ more.png --out p.csv
python -m mnist_exp.predict --model runs:/<run id>/model --test-index 0

Any MLflow model URI works. An image of any size or colour is made to look like MNIST: grayscale,
white digit on black (a dark-on-light scan is inverted), the digit scaled to fit a 20x20 box and
placed by its centre of mass in the 28x28 frame, as MNIST's digits were. An image over
MAX_PIXELS (4096x4096) is refused from its header, before anything is decoded.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_exp.cli import fail
from mnist_exp.composition import default_config
from mnist_exp.config import IMAGE_SIZE, MNIST_TEST_SIZE
from mnist_exp.tracking import store
from mnist_exp.tracking.health import TrackingUnavailable
from mnist_exp.training.mnist import DataError, load_mnist

DIGIT_BOX = 20  # MNIST's digits fit in 20x20, centred by mass in 28x28
INK = 0.2  # of the darkest-to-lightest range: fainter pixels (paper texture) don't widen the box
# What a folder given to --image is searched for (other files there, like notes, are left alone).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# The most pixels an image may have, read from its header before anything is decoded: a phone's
# 12 Mpx photo fits, while a file whose header announces 20000x10000 (a decompression bomb, or
# a scan far larger than one digit needs) would take gigabytes to decode. Pillow's own check
# (Image.MAX_IMAGE_PIXELS) only warns below 179 Mpx.
MAX_SIDE = 4096
MAX_PIXELS = MAX_SIDE * MAX_SIDE
# What an image is reduced to before its digit is looked for: the digit ends up 20x20 anyway,
# and numpy's float copies of a 16 Mpx photo would take over a gigabyte.
WORK_SIDE = 1024


def mnist_like(image: Image.Image) -> np.ndarray:
    """A (28, 28) float32 image in [0, 1], white digit on black, or ValueError if blank."""
    if "A" in image.getbands() or image.mode == "P":
        # Transparent pixels count as white paper under the digit.
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    edges = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    # The border is background: light there means a dark digit on paper, which MNIST inverts.
    paper = np.median(edges)
    ink = np.clip(paper - gray if paper > 127 else gray - paper, 0, None)
    if ink.max() == 0:
        raise ValueError("no digit found: the image is one flat colour")
    ink /= ink.max()
    rows, cols = np.nonzero(ink > INK)
    digit = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = DIGIT_BOX / max(digit.shape)
    size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
    small = Image.fromarray(np.uint8(digit * 255)).resize(size, Image.Resampling.LANCZOS)
    small = np.asarray(small, dtype=np.float32) / 255
    # Its centre of mass goes to pixel (14, 14), where MNIST has it, without leaving the frame.
    mass = small.sum()
    centre_y = (small.sum(axis=1) @ np.arange(small.shape[0])) / mass
    centre_x = (small.sum(axis=0) @ np.arange(small.shape[1])) / mass
    top = int(np.clip(round(IMAGE_SIZE / 2 - centre_y), 0, IMAGE_SIZE - small.shape[0]))
    left = int(np.clip(round(IMAGE_SIZE / 2 - centre_x), 0, IMAGE_SIZE - small.shape[1]))
    frame = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    frame[top : top + small.shape[0], left : left + small.shape[1]] = small
    return frame


def read_image(path: Path) -> np.ndarray:
    if not path.is_file():
        fail(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            # Pillow warns of images over 89 Mpx; ours is the lower limit, checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only
    except Image.DecompressionBombError:
        fail(too_large(path, f"over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx"))
    except UnidentifiedImageError:
        fail(f"{path}: not an image file Pillow can read")
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            fail(too_large(path, f"{width}x{height} pixels"))
        try:
            # A JPEG is decoded at a reduced scale straight away (Pillow's draft mode).
            image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)
            image.load()
        except Image.DecompressionBombError:  # a frame larger than the header said (ICO, ICNS)
            fail(too_large(path, f"over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx"))
        except (OSError, SyntaxError, EOFError, ValueError) as err:
            fail(f"{path}: the image cannot be decoded ({err}): the file is truncated or "
                 "damaged; export or copy it again")  # fmt: skip
        try:
            return mnist_like(image)
        except ValueError as err:
            fail(f"{path}: {err}")


def too_large(path: Path, size: str) -> str:
    return (f"{path}: its header announces {size}, more than the {MAX_SIDE}x{MAX_SIDE} "
            f"({MAX_PIXELS / 1e6:.1f} Mpx) an image may have (MNIST's digits are 28x28): crop "
            "it to the digit or shrink it")  # fmt: skip


def image_files(paths: list[Path]) -> list[Path]:
    """The files to predict: each file as given, each folder's image files in name order."""
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(f for f in path.iterdir()
                           if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)  # fmt: skip
            if not found:
                fail(f"{path}: a folder with no image files ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        else:
            files.append(path)
    return files


def read_test_image(index: int, cache_dir: str) -> tuple[np.ndarray, int]:
    """MNIST test image `index` as the model saw it in training, and its true label."""
    if not 0 <= index < MNIST_TEST_SIZE:
        fail(f"--test-index {index}: out of range; MNIST has test images 0..{MNIST_TEST_SIZE - 1}")
    try:
        mnist = load_mnist(cache_dir)
    except DataError as err:
        fail(str(err).splitlines()[0])
    return mnist.x_test[index].astype(np.float32) / 255, int(mnist.y_test[index])


def predict(model_uri: str, images: np.ndarray) -> np.ndarray:
    """The model's ten probabilities for each of (N, 28, 28) images in [0, 1]: shape (N, 10).
    The model is loaded once, and all images go through it in one call."""
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except (mlflow.exceptions.MlflowException, OSError) as err:
        fail(f"cannot load model '{model_uri}': {str(err).splitlines()[0]}")
    # The logged model's own loader predicts with no progress bar between the result lines.
    return np.asarray(model.predict(images[..., np.newaxis]))


def write_csv(path: Path, sources: list[str], probabilities: np.ndarray) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["image", "predicted", "probability", *(f"p{d}" for d in range(10))])
        for source, p in zip(sources, probabilities, strict=True):
            digit = int(p.argmax())
            writer.writerow([source, digit, f"{p[digit]:.4f}", *(f"{x:.4f}" for x in p)])


def main(argv: list[str] | None = None) -> int:
    defaults = default_config()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="models:/NAME/VERSION, runs:/ID/model, ...")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", type=Path, nargs="+", metavar="PATH",
                      help="image files of one digit each, or folders of them")  # fmt: skip
    what.add_argument("--test-index", type=int, metavar="N", help="MNIST test image N")
    parser.add_argument(
        "--out", type=Path, metavar="CSV",
        help="also write each prediction and its ten probabilities here",
    )  # fmt: skip
    parser.add_argument(
        "--tracking-uri", default=defaults.tracking.uri, help="default: %(default)s"
    )
    args = parser.parse_args(argv)

    # The input is checked before the model loads: a typo should not cost TensorFlow's start-up.
    if args.out is not None and not args.out.parent.is_dir():
        fail(f"--out {args.out}: no such folder {args.out.parent}")
    if args.image is not None:
        files = image_files(args.image)
        images, truth = np.stack([read_image(f) for f in files]), None
        sources = [str(f) for f in files]
    else:
        image, truth = read_test_image(args.test_index, defaults.data.cache_dir)
        images, sources = image[np.newaxis], [f"MNIST test image {args.test_index}"]
    try:
        store.use_store(args.tracking_uri)
    except TrackingUnavailable as err:
        fail(str(err))
    probabilities = predict(args.model, images)

    if len(sources) == 1:  # one digit: show how sure the model is of each answer
        for digit, p in enumerate(probabilities[0]):
            print(f"  {digit}  {p:.4f}  {'#' * round(p * 40)}")
    for source, p in zip(sources, probabilities, strict=True):
        predicted = int(p.argmax())
        line = f"{source}: predicted {predicted} (p={p[predicted]:.4f})"
        if truth is not None:
            line += f", true label {truth}" + (" (correct)" if truth == predicted else " (WRONG)")
        print(line)
    if args.out is not None:
        write_csv(args.out, sources, probabilities)
        print(f"{len(sources)} predictions written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
