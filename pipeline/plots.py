"""Figures of a run: the confusion matrix and the training curves (PNG, no display needed).

They always write PNG, whatever the file name, so callers can write to a temporary name and rename.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def draw_confusion(ax: Axes, cm: np.ndarray, classes: Sequence[str], normalised: bool = False,
                   text_size: float = 8, tick_size: float | None = None) -> None:
    """One confusion matrix on ``ax``, shaded by recall (row-normalised), each cell written in as its count or,
    with ``normalised``, its share of the true class: a run's figure and every grid cell draw it alike."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    sizes = {} if tick_size is None else {"fontsize": tick_size}
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", **sizes)
    ax.set_yticks(range(len(classes)), classes, **sizes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            text = f"{norm[i, j]:.2f}" if normalised else str(int(cm[i, j]))
            ax.text(j, i, text, ha="center", va="center", fontsize=text_size,
                    color="white" if norm[i, j] > 0.5 else "black")


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    """Two panels: row-normalised (recall per class) and raw counts, every cell labelled."""
    side = max(4.0, 0.7 * len(classes) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, normalised, name in ((axes[0], True, "normalised by true class"), (axes[1], False, "counts")):
        draw_confusion(ax, cm, classes, normalised)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    fig.suptitle(title)
    save_png(fig, path)


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    """Loss and accuracy per epoch, train against validation, plus the learning rate."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key in ((axes[0], "loss"), (axes[1], "acc")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], marker="o", label="train")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], marker="o", label="val")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[2].plot(epochs, [row["learning_rate"] for row in history], marker=".")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("learning rate")
    axes[2].grid(alpha=0.3)
    fig.suptitle(title)
    save_png(fig, path)


def plot_timeline(times: list[float], probs: np.ndarray, classes: list[str], path: Path, title: str,
                  duration: float = 0.0) -> None:
    """Probability of every class over the clip (one point per window, at its centre): the chart a journal
    app would show beside the entry. A single window is drawn as bars instead."""
    probs = np.asarray(probs)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    colours = plt.get_cmap("tab10")
    if len(times) == 1:
        ax.bar(classes, probs[0], color=[colours(i) for i in range(len(classes))])
        ax.set_ylabel("probability")
    else:
        for i, name in enumerate(classes):
            ax.plot(times, probs[:, i], marker="o", color=colours(i), label=name)
        ax.set_xlabel("time (s, window centre)")
        if duration > 0:
            ax.set_xlim(0, duration)
        ax.set_ylabel("probability")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    save_png(fig, path)


def save_png(fig: Figure, path: Path, dpi: int = 110) -> None:
    """Lay out, write as PNG whatever the name (callers write to a temporary name), and free the figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
