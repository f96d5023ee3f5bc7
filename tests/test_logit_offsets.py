"""benchmarks/logit_offsets.py: its clip probabilities are predict's, and its search finds what it should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.logit_offsets import SERVE_INTERVAL, Faces, clip_faces, scores, search
from models.served import DEFAULT_MODEL, load_onnx
from pipeline.serve.export import export_onnx
from pipeline.serve.predict import predict_file


@pytest.mark.slow
def test_faces_pooled_with_offsets_are_what_predict_gives_for_the_export_with_them(dataset: dict,
                                                                                   tmp_path: Path) -> None:
    """Per-face log-probabilities of the no-mirror export, flipped here, offsets added, pooled as ``Faces``
    pools them: the probabilities ``predict`` gives with the mirror-averaged export that carries the offsets."""
    plain, shifted = tmp_path / "plain.onnx", tmp_path / "shifted.onnx"
    export_onnx(DEFAULT_MODEL, plain, mirror=False, serve_interval=SERVE_INTERVAL)
    export_onnx(DEFAULT_MODEL, shifted, mirror=True, serve_interval=SERVE_INTERVAL, offsets={"sad": 0.5, "fear": -1})
    clips = [dataset["root"] / "Happy_0001.mp4", dataset["root"] / "Sad_0004.mp4"]
    model = load_onnx(plain)
    faces = clip_faces(clips, model)
    offsets = np.zeros((1, len(model.classes)), np.float32)
    offsets[0, model.classes.index("sad")], offsets[0, model.classes.index("fear")] = 0.5, -1.0
    served = load_onnx(shifted)
    for clip, probs in zip(clips, faces.probs(offsets)[0], strict=True):
        np.testing.assert_allclose(probs, predict_file(clip, served).probs, atol=2e-5)
    assert list(faces.truth) == [model.classes.index("happy"), model.classes.index("sad")]


def synthetic(n: int, suppressed: int, by: float = 3.0, classes: int = 3) -> Faces:
    """``n`` one-face items cycling through the classes: the true class's logit 2, the others 0, and class
    ``suppressed`` ``by`` lower everywhere, so that it loses its own items until an offset above ``by`` - 2
    gives them back (at exactly that the tie goes to class 0)."""
    truth = np.arange(n) % classes
    logits = np.zeros((n, classes), np.float32)
    logits[np.arange(n), truth] = 2.0
    logits[:, suppressed] -= by
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return Faces(np.stack([logp, logp], axis=1), np.arange(n), np.ones(n, np.float32), truth, np.ones(n, bool))


def test_search_ranks_clip_accuracy_first_then_the_smallest_offsets_and_refuses_impossible_floors() -> None:
    valid = synthetic(60, suppressed=1, by=3.0)  # class 1 needs more than +1.0 on FER+ valid
    none = np.zeros((1, 3), np.float32)
    accuracy, recall = scores(valid, none)
    assert recall[0, 1] == 0.0 and accuracy[0] == pytest.approx(2 / 3)
    grid = np.arange(-2.0, 2.01, 0.5)
    # The clips need more than +1.5: +2.0 wins on them, though +1.5 meets the floor with smaller offsets.
    chosen, info = search(synthetic(30, suppressed=1, by=3.5), valid, grid, free=[1, 2], floors={1: 0.9},
                          classes=3, five=[0, 1])
    np.testing.assert_array_equal(chosen, [0.0, 2.0, 0.0])
    assert info["grid_points"] == len(grid) ** 2 and info["front"]["0.90"] == [1.0, pytest.approx(2 / 3)]
    # Where the clips are as easy as valid, the smallest offset that does it: +1.5 (+1.0 only ties).
    chosen, _ = search(synthetic(30, suppressed=1), valid, grid, free=[1, 2], floors={1: 0.9}, classes=3)
    np.testing.assert_array_equal(chosen, [0.0, 1.5, 0.0])
    assert scores(synthetic(30, suppressed=1), chosen[None])[0][0] == 1.0
    with pytest.raises(SystemExit, match="no offsets"):
        search(valid, valid, grid, free=[2], floors={1: 0.5}, classes=3)  # class 1's own offset is held at 0


def test_faces_out_of_item_order_are_refused() -> None:
    """``probs`` sums each item's faces as one run: faces of an item split apart would be summed wrongly."""
    logp = np.zeros((3, 2, 3), np.float32)
    with pytest.raises(ValueError, match="item by item"):
        Faces(logp, np.array([1, 1, 0]), np.ones(3, np.float32), np.array([0, 1]), np.ones(2, bool))
