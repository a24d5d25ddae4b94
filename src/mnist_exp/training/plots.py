"""Figures for a run: arrays in, matplotlib Figure out. No pyplot, so no GUI backend is needed."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _image_grid(images: np.ndarray, titles: list[str], title: str, cols: int = 5) -> Figure:
    """Tiles with a title each, drawn as one mosaic image in one Axes: an Axes per tile made
    every grid cost about a second (bench/RESULTS.md, "Where a run's time goes")."""
    rows = max(1, math.ceil(len(images) / cols))
    height = rows * 2.1 + 0.5
    fig = Figure(figsize=(cols * 1.9, height))
    fig.suptitle(title)
    ax = fig.add_axes((0.01, 0.0, 0.98, 1 - 0.45 / height))
    ax.set_axis_off()
    side = images.shape[1]
    # Each cell: the tile with a margin either side, and room above it for two lines of title.
    margin, title_room = side // 8, side // 3
    cell_w, cell_h = side + 2 * margin, side + title_room + margin
    mosaic = np.full((rows * cell_h, cols * cell_w), np.nan)
    for i, (image, tile_title) in enumerate(zip(images, titles, strict=False)):
        top, left = (i // cols) * cell_h + title_room, (i % cols) * cell_w + margin
        tile = np.squeeze(image).astype(float)
        span = tile.max() - tile.min()
        # Each tile scaled to its own range, as an imshow of its own would.
        mosaic[top : top + side, left : left + side] = (tile - tile.min()) / span if span else 0
        ax.text(left + side / 2, top - 1, tile_title, ha="center", va="bottom", fontsize=9)
    cmap = matplotlib.colormaps["binary"].with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    return fig


def sample_grid(images: np.ndarray, labels: np.ndarray, count: int = 25) -> Figure:
    """The tutorial's first figure: the first training images, with their labels."""
    titles = [f"label {int(y)}" for y in labels[:count]]
    return _image_grid(images[:count], titles, f"First {count} training images")


def misclassified_grid(
    images: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray, max_tiles: int = 25
) -> Figure:
    """Misclassified test images, most confident mistakes first, titled true -> predicted (p)."""
    y_pred = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    confidence = probabilities[wrong, y_pred[wrong]]
    shown = wrong[np.argsort(-confidence, kind="stable")][:max_tiles]
    titles = [
        f"true {int(y_true[i])} / pred {int(y_pred[i])}\np={probabilities[i, y_pred[i]]:.2f}"
        for i in shown
    ]
    title = f"{len(wrong)} of {len(y_true)} test images misclassified"
    if len(shown) < len(wrong):
        title += f" (the {len(shown)} most confident shown)"
    if not len(shown):
        fig = Figure(figsize=(4, 1.5))
        fig.text(0.5, 0.5, "No misclassified test images", ha="center", va="center")
        return fig
    return _image_grid(images[shown], titles, title)


def _curves(series: dict[str, list[float]], ylabel: str, title: str) -> Figure:
    """One line per named series, plotted against epochs 1, 2, ..."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for label, values in series.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _train_and_validation(history: dict[str, list[float]], metric: str) -> dict[str, list[float]]:
    keys = {"train": metric, "validation": f"val_{metric}"}
    return {label: history[key] for label, key in keys.items() if key in history}


def accuracy_curve(history: dict[str, list[float]]) -> Figure:
    """Train and validation accuracy per epoch."""
    return _curves(_train_and_validation(history, "accuracy"), "accuracy", "Accuracy per epoch")


def loss_curve(history: dict[str, list[float]]) -> Figure:
    """Train and validation loss per epoch: a widening gap is overfitting."""
    return _curves(_train_and_validation(history, "loss"), "loss", "Loss per epoch")


def validation_curves(curves: dict[str, list[float]]) -> Figure:
    """Validation accuracy per epoch of several runs, overlaid; keys are run names."""
    return _curves(curves, "validation accuracy", "Validation accuracy per epoch")


def confusion_matrix(counts: np.ndarray) -> Figure:
    """Test images per (true, predicted) digit; the off-diagonal cells are the mistakes."""
    classes = np.arange(len(counts))
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    # A log scale, so a handful of mistakes still shows beside the ~1000 correct per digit.
    ax.imshow(np.log1p(counts), cmap="Blues")
    dark = np.log1p(counts) > np.log1p(counts.max()) / 2
    for (true, pred), count in np.ndenumerate(counts):
        if count:
            color = "white" if dark[true, pred] else "black"
            ax.text(pred, true, str(count), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(classes)
    ax.set_yticks(classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    mistakes = counts.sum() - np.trace(counts)
    ax.set_title(f"Confusion matrix: {mistakes} of {counts.sum()} test images wrong")
    return fig


def misclassified_per_class(counts: dict[str, np.ndarray]) -> Figure:
    """Side by side per digit, one bar per run: how many test images of that digit it got wrong.

    `counts` maps a run name to its confusion matrix.
    """
    fig = Figure(figsize=(min(16, 6 + 0.5 * len(counts)), 4.5), layout="constrained")
    if not counts:
        fig.text(0.5, 0.5, "No run logged confusion_matrix.json", ha="center", va="center")
        return fig
    ax = fig.subplots()
    width = 0.8 / max(1, len(counts))
    for i, (name, matrix) in enumerate(counts.items()):
        wrong = matrix.sum(axis=1) - np.diag(matrix)
        offset = (i - (len(counts) - 1) / 2) * width  # the group of bars centred on the digit
        ax.bar(np.arange(len(wrong)) + offset, wrong, width, label=name)
    ax.set_xticks(np.arange(10))
    ax.set_xlabel("true digit")
    ax.set_ylabel("misclassified test images")
    ax.set_title("Misclassified test images per digit")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
