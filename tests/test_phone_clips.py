"""Clips as phones and browsers record them: turned, 60 fps, variable rate, webm without a duration,
10-bit HEVC .mov, sound only. Each is made with the static FFmpeg from one real-photo clip and must be
read, sampled and classified like the same clip as a plain 30 fps H.264 mp4."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from models.served import ServingModel, load_serving_model
from pipeline.prepare.run import run_prepare
from pipeline.prepare.settings import PrepareConfig, SplitSettings
from pipeline.serve.live import live_predictions
from pipeline.serve.predict import PredictError, Prediction, predict_file
from stacks.io import read_stack
from stacks.settings import StackSettings
from stacks.timegrid import interval_grid
from stacks.video import VideoReader
from tests.conftest import SMALL, make_face_clip
from tests.fixtures import phone_clips

FRAME = 1 / 30  # one frame period of the source clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, head: np.ndarray) -> dict[str, Path]:
    """A 3.2 s 320x240 30 fps clip of a real face, and every phone and browser version of it."""
    folder = tmp_path_factory.mktemp("phone")
    raw = make_face_clip(head, folder / "raw.mp4", seconds=3.2, size=SMALL, seed=4).path
    made = {"h264": phone_clips.h264(raw, folder / "h264.mp4")}
    for degrees in (90, 180, 270):
        made[f"rot{degrees}"] = phone_clips.rotated(raw, folder / f"rot{degrees}.mp4", degrees)
    made["fps60"] = phone_clips.at_fps(raw, folder / "fps60.mp4", 60)
    made["vfr"] = phone_clips.variable_rate(raw, folder / "vfr.mp4")
    made["vp8"] = phone_clips.browser_webm(raw, folder / "vp8.webm", "vp8")
    made["vp9"] = phone_clips.browser_webm(raw, folder / "vp9.webm", "vp9")
    made["hevc"] = phone_clips.iphone_hevc(raw, folder / "iphone.mov")
    made["audio_mp4"] = phone_clips.audio_only(folder / "voice.mp4")
    made["audio_webm"] = phone_clips.audio_only(folder / "voice.webm")
    return made


@pytest.fixture(scope="module")
def shipped() -> ServingModel:
    return load_serving_model()


@pytest.fixture(scope="module")
def reference(clips: dict[str, Path], shipped: ServingModel) -> Prediction:
    pred = predict_file(clips["h264"], shipped)
    assert pred.label == "happy" and pred.face_ratio == 1.0
    return pred


def _first_frames(path: Path, n: int = 12) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return [bgr for _, bgr in reader.frames(lambda i: i < n, stop=n)]


def _same_answer(pred: Prediction, reference: Prediction, tol: float = 0.03) -> None:
    assert pred.label == reference.label and pred.face_ratio == 1.0
    np.testing.assert_allclose(pred.probs, reference.probs, atol=tol)
    assert [(w["start_s"], w["end_s"]) for w in pred.to_dict()["windows"]] == \
        [(w["start_s"], w["end_s"]) for w in reference.to_dict()["windows"]]
    assert pred.to_dict()["seconds"] == reference.to_dict()["seconds"]


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_turned_phone_clip_is_read_upright(clips: dict[str, Path], degrees: int) -> None:
    with VideoReader(clips[f"rot{degrees}"]) as reader:
        assert reader.rotation == degrees and (reader.width, reader.height) == SMALL
    upright, turned = _first_frames(clips["h264"]), _first_frames(clips[f"rot{degrees}"])
    assert all(t.shape == (SMALL[1], SMALL[0], 3) for t in turned)
    for a, b in zip(upright, turned, strict=True):
        assert np.abs(a.astype(np.int16) - b).mean() < 4  # two encodes of one picture, not a turned one
    # The stored picture is turned: read without the display matrix, it would not match.
    stored = cv2.rotate(turned[0], cv2.ROTATE_90_CLOCKWISE) if degrees != 180 else turned[0][::-1, ::-1]
    assert stored.shape != upright[0].shape or np.abs(stored.astype(np.int16) - upright[0]).mean() > 20


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_turned_phone_clip_is_classified_like_the_upright_one(clips: dict[str, Path], shipped: ServingModel,
                                                                reference: Prediction, degrees: int) -> None:
    _same_answer(predict_file(clips[f"rot{degrees}"], shipped), reference)


def test_prepare_live_and_annotate_see_the_portrait_clip_upright(clips: dict[str, Path], shipped: ServingModel,
                                                                 tmp_path: Path) -> None:
    from pipeline.serve.annotate import write_annotated

    src = tmp_path / "src"
    (src / "happy").mkdir(parents=True)
    for name in ("h264", "rot90"):
        (src / "happy" / f"{name}.mp4").write_bytes(clips[name].read_bytes())
    result = run_prepare(PrepareConfig(source=src, out=tmp_path / "stacks", stack=StackSettings(size=48),
                                       split=SplitSettings(val_fraction=0), progress=False))
    stacks = {Path(r.source).stem: read_stack(r.path) for r in result.rows}
    assert stacks["rot90"].meta["frame_size"] == list(SMALL) and all(stacks["rot90"].meta["found"])
    # The same face boxes, in upright coordinates, as in the upright clip (two encodes: a few pixels apart).
    assert np.abs(np.array(stacks["rot90"].meta["boxes"]) - stacks["h264"].meta["boxes"]).max() <= 6

    live = list(live_predictions(shipped, source=clips["rot90"], show=False))
    assert live and all(p.probs is not None for p in live)  # a face in every window of the turned clip

    pred = predict_file(clips["rot90"], shipped)
    write_annotated(pred, tmp_path / "annotated.mp4")
    capture = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (SMALL[1], SMALL[0], 3)


def _sampled_times(path: Path) -> tuple[list[float], list[np.ndarray]]:
    with VideoReader(path) as reader:
        picked = list(reader.sampled(interval_grid(5)))
    return [item.time for item, _, _ in picked], [bgr for _, _, bgr in picked]


def test_60_fps_and_variable_rate_clips_sample_the_same_moments(clips: dict[str, Path]) -> None:
    moments = [k * 5 / 30 for k in range(20)]
    times30, frames30 = _sampled_times(clips["h264"])
    assert times30 == pytest.approx(moments, abs=1e-6)  # 30 fps: every 5th frame, as before
    times60, frames60 = _sampled_times(clips["fps60"])
    assert times60 == pytest.approx(moments, abs=1e-3)  # 60 fps: the very same moments, not twice as close
    for a, b in zip(frames30, frames60, strict=True):
        assert np.abs(a.astype(np.int16) - b).mean() < 4
    # Variable rate (2-4 frame gaps): the frame a player shows at each moment, the last one not after it.
    with VideoReader(clips["vfr"]) as reader:
        every = [item.time for item in reader.decoded()]
    gaps = np.diff(every)
    assert gaps.max() > 2.5 * FRAME and gaps.min() == pytest.approx(FRAME, abs=1e-3)  # really variable
    times, frames = _sampled_times(clips["vfr"])
    assert times == [max(t for t in every if t <= m + 1e-3) for m in moments]
    assert all(m - t < 4 * FRAME for t, m in zip(times, moments))
    with VideoReader(clips["h264"]) as reader:  # the same pictures as the 30 fps clip's at those times
        same = {round(t * 30) for t in times}
        source = {index: bgr for index, bgr in reader.frames(lambda i: i in same) if bgr is not None}
    for t, bgr in zip(times, frames):
        assert np.abs(source[round(t * 30)].astype(np.int16) - bgr).mean() < 4


@pytest.mark.parametrize("kind", ["fps60", "vfr"])
def test_60_fps_and_variable_rate_clips_are_classified_like_30_fps(clips: dict[str, Path], shipped: ServingModel,
                                                                   reference: Prediction, kind: str) -> None:
    pred = predict_file(clips[kind], shipped)
    _same_answer(pred, reference)
    assert len(pred.boxes) == len(reference.boxes)  # one sample every 1/6 s, whatever the frame rate


def test_prepare_records_each_sampled_frames_time_alike_at_any_rate(clips: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "happy").mkdir(parents=True)
    for name in ("h264", "fps60", "vfr"):
        (src / "happy" / f"{name}.mp4").write_bytes(clips[name].read_bytes())
    result = run_prepare(PrepareConfig(source=src, out=tmp_path / "stacks", stack=StackSettings(size=48),
                                       split=SplitSettings(val_fraction=0), progress=False))
    stacks = {Path(r.source).stem: read_stack(r.path) for r in result.rows}
    assert sorted(stacks) == ["fps60", "h264", "vfr"]  # one 3 s sequence each; the 0.2 s tails dropped
    times30 = stacks["h264"].meta["timestamps"]
    assert times30 == pytest.approx([k * 5 / 30 for k in range(18)], abs=1e-6)
    assert stacks["h264"].meta["frame_indices"] == list(range(0, 90, 5))
    assert stacks["fps60"].meta["timestamps"] == pytest.approx(times30, abs=1e-3)
    assert stacks["fps60"].meta["frame_indices"] == list(range(0, 180, 10)) and stacks["fps60"].meta["frames"] == 180
    assert all(0 <= t30 - t < 4 * FRAME for t, t30 in zip(stacks["vfr"].meta["timestamps"], times30))
    for kind in ("fps60", "vfr"):
        assert np.abs(np.array(stacks[kind].meta["boxes"]) - stacks["h264"].meta["boxes"]).max() <= 6


@pytest.mark.parametrize("kind", ["vp8", "vp9", "hevc"])
def test_browser_and_iphone_containers_are_classified_like_h264(clips: dict[str, Path], shipped: ServingModel,
                                                                reference: Prediction, kind: str) -> None:
    with VideoReader(clips[kind]) as reader:
        if kind != "hevc":  # MediaRecorder's webm: the header gives no length
            assert reader.seconds_hint == 0.0 and reader.frame_count_hint == 0
        else:
            assert reader._stream.codec_context.name == "hevc"
    _same_answer(predict_file(clips[kind], shipped), reference)


@pytest.mark.parametrize("kind", ["audio_mp4", "audio_webm"])
def test_a_file_with_sound_only_gets_one_clear_line(clips: dict[str, Path], shipped: ServingModel, kind: str,
                                                    tmp_path: Path) -> None:
    with pytest.raises(PredictError, match="no video stream") as info:
        predict_file(clips[kind], shipped)
    assert "\n" not in str(info.value) and "corrupt" not in str(info.value)

    src = tmp_path / "src"
    (src / "happy").mkdir(parents=True)
    (src / "happy" / clips[kind].name).write_bytes(clips[kind].read_bytes())
    (src / "happy" / "h264.mp4").write_bytes(clips["h264"].read_bytes())
    result = run_prepare(PrepareConfig(source=src, out=tmp_path / "stacks", stack=StackSettings(size=32),
                                       split=SplitSettings(val_fraction=0), progress=False))
    [skipped] = [s for s in result.report["skipped"] if s["source"] == f"happy/{clips[kind].name}"]
    assert skipped["chunk"] is None and "no video stream" in skipped["detail"]
    assert len(result.rows) == 1  # the clip beside it is made as usual
