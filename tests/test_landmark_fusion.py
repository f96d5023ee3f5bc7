"""benchmarks/landmark_fusion.py: the geometry it learns from is the face's shape alone, and its scoring is the
benchmark's (a clip with no face is wrong, w = 0 is the model alone)."""

from __future__ import annotations

import numpy as np

from benchmarks.clip_accuracy import LABELS
from benchmarks.landmark_fusion import CLASSES, aligned, fused_accuracy
from stacks.faces import MeshFinder


def test_aligned_points_forget_position_size_and_roll() -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (1, 468, 2))
    angle, scale, shift = 0.4, 2.5, np.array([30.0, -12.0])
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ turn.T * scale + shift
    assert np.allclose(aligned(points), aligned(moved), atol=1e-5)
    eyes = aligned(points).reshape(2, 468)[:, list(MeshFinder.EYES)]  # rows x, y; columns right, left eye
    assert np.allclose(eyes, [[-0.5, 0.5], [0.0, 0.0]], atol=1e-6)


def test_fused_accuracy_scores_as_the_benchmark_does() -> None:
    def one_hot(label: str, p: float = 0.6) -> np.ndarray:
        probs = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
        probs[LABELS.index(label)] = p
        return probs

    ours = {"Sad_0001.mp4": ("sad", one_hot("neutral")), "Sad_0002.mp4": ("sad", one_hot("sad")),
            "Happy_0003.mp4": ("happy", np.zeros(len(LABELS)))}  # no face found in the clip
    sad = np.log(np.full(len(CLASSES), 0.01))
    sad[CLASSES.index("sad")] = np.log(0.94)
    geometry = {"Sad_0001.mp4": sad, "Happy_0003.mp4": sad}
    assert fused_accuracy(ours, geometry, 0.0, None) == 100 / 3  # the model alone: one of three right
    assert fused_accuracy(ours, geometry, 1.0, None) == 200 / 3  # the geometry turns the first clip to sad
    assert fused_accuracy(ours, geometry, 1.0, 1) == 50.0  # odd: 0001 (now right) and 0003 (no face, wrong)
    assert fused_accuracy(ours, geometry, 1.0, 0) == 100.0  # even: 0002
