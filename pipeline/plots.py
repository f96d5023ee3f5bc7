"""Figures of a run: the confusion matrix and the training curves (PNG, no display needed).

They always write PNG, whatever the file name, so callers can write to a temporary name and rename.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    """Two panels: row-normalised (recall per class) and raw counts, every cell labelled."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.7 * len(classes) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, data, name, fmt in ((axes[0], norm, "normalised by true class", "{:.2f}"),
                                (axes[1], cm, "counts", "{:d}")):
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
        for i in range(len(classes)):
            for j in range(len(classes)):
                value = data[i, j]
                ax.text(j, i, fmt.format(int(value) if fmt == "{:d}" else value), ha="center", va="center",
                        fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


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
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


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
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
