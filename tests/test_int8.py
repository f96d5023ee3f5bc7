"""The int8 ONNX form of a model (`export --onnx --int8 FACES`): what `predict` serves by default, ~4x
faster on a CPU than float, with the float model's answers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

import cli
from models.served import DEFAULT_MODEL, SERVED_MODEL, load_serving_model
from pipeline.serve.export import export_onnx
from pipeline.serve.predict import predict_file
from stacks.faces import Box, crop_grey
from stacks.video import VideoReader


@pytest.fixture(scope="module")
def faces_dir(dataset: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The faces the float model is served from the test clips, as calibration images (the shipped model's
    own were FER2013's training faces)."""
    folder = tmp_path_factory.mktemp("faces")
    model = load_serving_model(DEFAULT_MODEL)
    for clip in sorted(dataset["root"].glob("*_000[1-6].mp4")):
        pred = predict_file(clip, model)
        with VideoReader(clip) as reader:
            for index, bgr in reader.frames(pred.boxes.__contains__):
                if bgr is not None:
                    face = crop_grey(bgr, Box(*pred.boxes[index]), model.inputs.image_size)
                    cv2.imwrite(str(folder / f"{clip.stem}_{index}.png"), face)
    return folder


def test_the_shipped_int8_model_is_the_shipped_checkpoint(dataset: dict) -> None:
    """Served in int8, a face every 1/3 s instead of 1/6 s: on 100 clips, the same accuracy (51% and 50%)."""
    served, float_model = load_serving_model(SERVED_MODEL), load_serving_model(DEFAULT_MODEL)
    assert SERVED_MODEL.is_file() and served.source == SERVED_MODEL and served.backend == "onnx" and served.int8
    assert served.stack == dataclasses.replace(float_model.stack, interval=10)  # every 1/3 s
    assert (served.classes, served.inputs) == (float_model.classes, float_model.inputs)
    same_faces = dataclasses.replace(float_model, stack=served.stack)
    for name in ("Happy_0001.mp4", "Sad_0004.mp4"):
        a, b = predict_file(dataset["root"] / name, served), predict_file(dataset["root"] / name, same_faces)
        assert a.label == b.label and np.abs(a.probs - b.probs).max() < 0.03
        assert a.label == predict_file(dataset["root"] / name, float_model).label


@pytest.mark.slow
def test_an_int8_export_keeps_the_settings_and_the_answers(dataset: dict, faces_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    meta = export_onnx(DEFAULT_MODEL, out, int8=faces_dir)
    assert meta["int8"] and out.stat().st_size < DEFAULT_MODEL.stat().st_size * 1.1  # int8 weights, not float
    model = load_serving_model(out)
    assert model.int8 and "int8" in model.describe() and model.stack == load_serving_model(DEFAULT_MODEL).stack
    pred, reference = predict_file(dataset["root"] / "Happy_0002.mp4", model), predict_file(
        dataset["root"] / "Happy_0002.mp4", load_serving_model(DEFAULT_MODEL))
    assert pred.label == reference.label and np.abs(pred.probs - reference.probs).max() < 0.05


def test_int8_needs_onnx_and_faces(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["export", str(DEFAULT_MODEL), "--compact", str(tmp_path / "x.pt"), "--int8", str(tmp_path)]) == 2
    assert "pass --onnx FILE" in capsys.readouterr().err
    assert cli.main(["export", str(DEFAULT_MODEL), "--onnx", str(tmp_path / "x.onnx"), "--int8", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "no face images there" in err and "\n" not in err and not (tmp_path / "x.onnx").exists()
    assert cli.main(["export", str(DEFAULT_MODEL), "--onnx", str(tmp_path / "x.onnx"), "--int8", "/nonexistent"]) == 1
    assert "--int8 /nonexistent: no such folder" in capsys.readouterr().err  # said "no face images there"
    one = tmp_path / "one"  # one image was taken without a word
    one.mkdir()
    cv2.imwrite(str(one / "face.png"), np.full((48, 48), 128, np.uint8))
    assert cli.main(["export", str(DEFAULT_MODEL), "--onnx", str(tmp_path / "x.onnx"), "--int8", str(one)]) == 0
    out = capsys.readouterr().out
    assert f"calibrated on 1 image(s) from {one}; warning: 1 is few" in out
