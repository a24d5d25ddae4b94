"""Figures for a run: arrays in, matplotlib Figure out. No pyplot, so no GUI backend is needed."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _image_grid(images: np.ndarray, titles: list[str], title: str, cols: int = 5) -> Figure:
    rows = max(1, math.ceil(len(images) / cols))
    height = rows * 2.1 + 0.5
    # Fixed spacing: a constrained layout would cost ~0.35 s per grid, every run.
    fig = Figure(figsize=(cols * 1.9, height))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.01, top=1 - 0.5 / height, hspace=0.45)
    fig.suptitle(title)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, tile_title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(np.squeeze(image), cmap="binary")
        ax.set_title(tile_title, fontsize=9)
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


def accuracy_curve(history: dict[str, list[float]]) -> Figure:
    """Train and validation accuracy per epoch."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for key, label in (("accuracy", "train"), ("val_accuracy", "validation")):
        if key in history:
            epochs = np.arange(1, len(history[key]) + 1)
            ax.plot(epochs, history[key], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
