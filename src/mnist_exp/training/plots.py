"""Figures for a run: arrays in, matplotlib Figure out. No pyplot, so no GUI backend is needed."""

from __future__ import annotations

import contextlib
import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def drawing_quickly() -> contextlib.AbstractContextManager:
    """Where a run's figures are saved: text drawn without FreeType's hinting, which was a tenth
    of their CPU and changes nothing one can see at 100 dpi (bench/figures.py, RESULTS.md)."""
    return matplotlib.rc_context({"text.hinting": "none"})


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


# How many of the first training images samples.png shows.
SAMPLES = 25


def sample_grid(images: np.ndarray, labels: np.ndarray, count: int = SAMPLES) -> Figure:
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


LINE_STYLES = ("-", "--", ":", "-.")


def _style(i: int, count: int) -> dict[str, object]:
    """A colour and line style of its own for line i of `count`: ten colours, then twenty, and
    a new line style each time the colours come round again, so thirty lines stay apart."""
    palette = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    colours = palette.N
    return {"color": palette(i % colours), "linestyle": LINE_STYLES[(i // colours) % 4]}


def _fixed_margins(fig: Figure) -> Figure:
    """Room for one axes' labels, ticks and one-line title, set once: the figures every run logs
    know their contents, and laying them out on each draw (matplotlib's constrained layout) was
    a third of their cost (bench/RESULTS.md)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, bottom=0.6 / height,
                        top=1 - 0.45 / height)  # fmt: skip
    return fig


def _epoch_axes(fig: Figure, ylabel: str, title: str):
    ax = fig.subplots()
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def _legend_columns(entries: int) -> int:
    return 1 if entries <= 15 else 2


def _figure_for_legend(entries: int) -> Figure:
    """Room for the curves and, beside them, a legend of `entries` lines."""
    columns = _legend_columns(entries)
    rows = math.ceil(entries / columns)
    return Figure(figsize=(9 + 3 * (columns - 1), max(4.5, 0.19 * rows + 1)), layout="constrained")


def _legend_outside(ax, entries: int) -> None:
    # Beside the axes, never over the curves, however many there are.
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False,
              ncols=_legend_columns(entries))  # fmt: skip


def _curves(series: dict[str, list[float]], ylabel: str, title: str) -> Figure:
    """One line per named series, plotted against epochs 1, 2, ..."""
    few = len(series) <= 3
    fig = _fixed_margins(Figure(figsize=(6, 4))) if few else _figure_for_legend(len(series))
    ax = _epoch_axes(fig, ylabel, title)
    for i, (label, values) in enumerate(series.items()):
        style = _style(i, len(series))
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=label, **style)
    if few:
        ax.legend()
    else:
        _legend_outside(ax, len(series))
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


def variant_curves(bands: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]) -> Figure:
    """Validation accuracy per epoch, one mean line and its confidence band per variant:
    `bands` maps a variant's name to (mean, low, high, seeds), each array one value per epoch
    (low and high NaN where one seed gives no band)."""
    fig = _figure_for_legend(len(bands))
    ax = _epoch_axes(fig, "validation accuracy", "Validation accuracy per epoch: mean and 95 % "
                     "interval over seeds")  # fmt: skip
    for i, (name, (mean, low, high, seeds)) in enumerate(bands.items()):
        style = _style(i, len(bands))
        epochs = np.arange(1, len(mean) + 1)
        ax.plot(epochs, mean, marker=".", label=f"{name} (n={seeds})", **style)
        ax.fill_between(epochs, low, high, color=style["color"], alpha=0.15, linewidth=0)
    _legend_outside(ax, len(bands))
    return fig


def variant_intervals(
    rows: list[tuple[str, float, float, float, list[float], bool | None]],
) -> Figure:
    """Each variant's mean best validation accuracy with its 95 % interval, every seed a dot;
    best first, at the top. A row: (name, mean, low, high, seed values, tied with the best)."""
    fig = Figure(figsize=(8, 1.2 + 0.42 * len(rows)), layout="constrained")
    ax = fig.subplots()
    for y, (_, mean, low, high, values, tied) in enumerate(rows):
        colour = "tab:blue" if tied is True else "tab:gray"
        if not np.isnan(low):
            ax.errorbar(mean, y, xerr=[[mean - low], [high - mean]], fmt="none", ecolor=colour,
                        capsize=4, linewidth=2)  # fmt: skip
        ax.plot(mean, y, "D", color=colour, markersize=7)
        ax.plot(values, [y] * len(values), "o", color="black", markersize=4, alpha=0.7)
    ax.set_yticks(range(len(rows)), [row[0] for row in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("best validation accuracy (diamond: mean; bar: 95 % interval; dots: seeds)")
    ax.set_title("Each variant: mean, 95 % interval, seeds (blue: tied with the best)")
    ax.grid(axis="x", alpha=0.3)
    return fig


def confusion_matrix(counts: np.ndarray) -> Figure:
    """Test images per (true, predicted) digit; the off-diagonal cells are the mistakes."""
    classes = np.arange(len(counts))
    fig = _fixed_margins(Figure(figsize=(6.5, 5.5)))
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
