"""What a trained run logs: the figure every run of the same data shares is drawn once."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np

from mnist_exp.tracking import outcome
from mnist_exp.training import plots


def test_samples_png_is_drawn_once_for_the_same_images_and_anew_for_others():
    images = np.random.default_rng(0).random((plots.SAMPLES, 28, 28)).astype(np.float32)
    labels = np.arange(plots.SAMPLES) % 10
    first = outcome.samples_png(images, labels)
    # Equal arrays, not the same objects: another job's slice of the same data.
    assert outcome.samples_png(images.copy(), labels.copy()) is first
    relabelled = outcome.samples_png(images, (labels + 1) % 10)
    assert relabelled != first
    for png in (first, relabelled):
        height, width, _ = matplotlib.image.imread(io.BytesIO(png), format="png").shape
        assert height > 100 and width > 100
