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


def synthetic(n: int, suppressed: int, classes: int = 3) -> Faces:
    """``n`` one-face items cycling through the classes: the true class's logit 2, the others 0, and class
    ``suppressed`` 3 lower everywhere, so that it loses its own items until an offset of 1.5 gives them back."""
    truth = np.arange(n) % classes
    logits = np.zeros((n, classes), np.float32)
    logits[np.arange(n), truth] = 2.0
    logits[:, suppressed] -= 3.0
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return Faces(np.stack([logp, logp], axis=1), np.arange(n), np.ones(n, np.float32), truth, np.ones(n, bool))


def test_search_finds_the_smallest_offset_that_gives_a_class_back_and_refuses_impossible_floors() -> None:
    clips, valid = synthetic(30, suppressed=1), synthetic(60, suppressed=1)
    none = np.zeros((1, 3), np.float32)
    accuracy, recall = scores(valid, none)
    assert recall[0, 1] == 0.0 and accuracy[0] == pytest.approx(2 / 3)
    grid = np.arange(-2.0, 2.01, 0.5)
    chosen, info = search(clips, valid, grid, free=[1, 2], floors={1: 0.9}, classes=3)
    np.testing.assert_array_equal(chosen, [0.0, 1.5, 0.0])  # 1.0 only ties (the tie goes to class 0), 2.0 is larger
    assert scores(clips, chosen[None])[0][0] == 1.0 and info["grid_points"] == len(grid) ** 2
    with pytest.raises(SystemExit, match="no offsets"):
        search(clips, valid, grid, free=[2], floors={1: 0.5}, classes=3)  # class 1's own offset is held at 0
