"""The model that ships in models/default/: present, small, ours, and right on a real face clip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models.served import DEFAULT_MODEL, load_serving_model
from pipeline.serve.predict import predict_file
from tests.conftest import REPO, SMALL, make_face_clip, shared_faces
from tests.fixtures.clips import load_photo


def test_default_model_ships_small_and_complete() -> None:
    assert DEFAULT_MODEL.is_file(), "models/default/ must hold the shipped model (make default-model)"
    assert DEFAULT_MODEL.stat().st_size <= 20e6
    model = load_serving_model()
    assert model.kind == "frame" and model.classes == ("angry", "disgust", "fear", "happy", "neutral", "sad",
                                                       "surprise")
    assert 0.0 <= model.stack.margin < 0.1  # the real margin of its FER2013 training crops


def test_default_model_sees_the_astronaut_smile(dataset: dict) -> None:
    pred = predict_file(dataset["root"] / "Happy_0001.mp4", load_serving_model())
    assert pred.label == "happy" and pred.confidence > 0.5 and pred.face_ratio == 1.0


def test_predict_with_the_served_onnx_model_never_imports_torch(dataset: dict) -> None:
    """torch and timm took 4 to 7 of the 8 to 9 s a `predict` call lasted; the default model is ONNX."""
    code = ("import sys, cli; code = cli.main(['predict', sys.argv[1], '--json']); "
            "print('torch loaded' if 'torch' in sys.modules else 'no torch', file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, str(dataset["root"] / "Happy_0002.mp4")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and '"label": "happy"' in done.stdout, done.stderr
    assert done.stderr.strip().endswith("no torch"), done.stderr


@pytest.mark.slow
def test_cli_predict_needs_no_model_argument_and_prints_nothing_on_stderr(dataset: dict) -> None:
    """Three runs: MediaPipe's one-time LiteRT line ("Input tensor memory is not aligned ...") came out in
    about half of the runs while the finder was warmed up on one blank frame."""
    for _ in range(3):
        done = subprocess.run([sys.executable, "cli.py", "predict", str(dataset["root"] / "Happy_0002.mp4"),
                               "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert '"label": "happy"' in done.stdout
        assert done.stderr == ""


@pytest.mark.shared_data
@pytest.mark.parametrize("label", ["neutral", "happy"])
def test_default_model_on_real_neutral_and_smiling_faces(label: str, tmp_path: Path) -> None:
    """Journal clips of real photos (the first five of each label): the FER2013-label model called all five neutral
    faces sad or angry; the shipped FER+ model must say neutral, and happy for a smile, on at least four of five
    (on the benchmark's 100 clips a label it recalls 82-93%: one photo in five may fall, as one neutral one does
    here, called sad)."""
    model = load_serving_model()
    photos = sorted((shared_faces() / label).glob("*.jpg"))[:5]
    answers = []
    for photo in photos:
        clip = make_face_clip(load_photo(photo), tmp_path / f"{photo.stem}.mp4", seconds=3.2, size=SMALL, seed=0).path
        answers.append(predict_file(clip, model).label)
    assert answers.count(label) >= 4, dict(zip([p.name for p in photos], answers))
