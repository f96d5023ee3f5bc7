"""Sequence length and interval are times: a 30 fps constant-rate clip is sampled and classified exactly
as it was when frames were picked by index (every k-th frame), and models store seconds."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from models.checkpoint import load_checkpoint, save_checkpoint
from models.served import ServingModel, load_serving_model
from pipeline.prepare.run import run_prepare
from pipeline.prepare.settings import PrepareConfig, SplitSettings
from pipeline.serve.predict import classify_stacks, predict_file, stack_window
from stacks.faces import Box, DetectionFinder, find_faces
from stacks.io import read_stack
from stacks.maker import stack_frames
from stacks.settings import StackSettings
from stacks.timegrid import TOLERANCE, sequence_grid, shown_at
from stacks.tracks import choose_face
from stacks.video import frame_bgr
from stacks.windows import SampledFrame, WindowPlan, windows
from tests.conftest import REPO

# Saved before models stored seconds: the shipped model's FER2013 stage (the FER+ model started from it).
OLD_CHECKPOINT = REPO / "models" / "default" / "fer2013_resnet18.pt"


def _every_frame(path: Path) -> list[np.ndarray]:
    """Every frame in decoding order, by index, as the decoder before the time grid read them (OpenCV's
    capture then; PyAV's frames here, converted as ``VideoReader`` converts them, so that only the
    choice of frames is compared)."""
    with av.open(str(path)) as container:
        return [frame_bgr(frame) for frame in container.decode(video=0)]


def _by_index(path: Path, model: ServingModel) -> np.ndarray:
    """predict as it was: every interval-th frame by index, windows in frames, the mean of the windows."""
    finder = DetectionFinder()
    plan = WindowPlan.for_stack(model.stack)
    sampled = [SampledFrame(i, bgr, find_faces(finder, bgr), i / 30) for i, bgr in enumerate(_every_frame(path))
               if i % plan.interval == 0]
    stacked = [s for w in windows(sampled, plan) if (s := stack_window(w, model)) is not None]
    return np.mean(classify_stacks(model, stacked), axis=0)


def test_the_shipped_model_is_an_old_checkpoint_read_at_30_fps() -> None:
    data = load_checkpoint(OLD_CHECKPOINT)
    assert "timing" not in data  # saved before models stored seconds
    stack = load_serving_model(OLD_CHECKPOINT).stack
    assert (stack.sequence_length, stack.interval) == (90, 5) and stack.sequence_seconds == 3.0


def test_an_old_checkpoint_predicts_on_a_30_fps_clip_as_before(dataset: dict) -> None:
    clip = dataset["root"] / "Happy_0001.mp4"
    model = load_serving_model(OLD_CHECKPOINT)
    pred = predict_file(clip, model)
    np.testing.assert_allclose(pred.probs, _by_index(clip, model), atol=1e-6)
    assert sorted(pred.boxes) == list(range(0, 96, 5))
    assert [t for w in pred.windows for t in (w.start_s, w.end_s)] == pytest.approx([0.0, 3.0, 1 / 3, 3.2])


def test_prepare_makes_the_same_30_fps_stacks_as_picking_every_kth_frame(dataset: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    clip = src / "Happy_0001.mp4"
    clip.write_bytes((dataset["root"] / "Happy_0001.mp4").read_bytes())
    settings = StackSettings(size=48)
    result = run_prepare(PrepareConfig(source=src, out=tmp_path / "out", stack=settings,
                                       split=SplitSettings(val_fraction=0), progress=False))
    [row] = result.rows
    stack = read_stack(row.path)
    frames = _every_frame(clip)
    old = stack_frames([(i, frames[i]) for i in range(0, 90, 5)], settings, DetectionFinder(), settings.channels)
    assert old is not None and np.array_equal(stack.array, old.array)  # pixel for pixel
    assert stack.meta["frame_indices"] == old.indices == list(range(0, 90, 5))
    assert stack.meta["boxes"] == old.boxes
    assert stack.meta["timestamps"] == pytest.approx([i / 30 for i in range(0, 90, 5)], abs=1e-6)


def test_a_checkpoint_stores_seconds_and_they_rule(tmp_path: Path) -> None:
    data = load_checkpoint(OLD_CHECKPOINT)
    payload = {k: v for k, v in data.items() if k not in ("format", "version", "versions", "path")}
    save_checkpoint(tmp_path / "now.pt", payload)
    assert load_checkpoint(tmp_path / "now.pt")["timing"] == {"sequence_seconds": 3.0, "interval_seconds": 0.166667,
                                                               "min_seconds": 2.5, "reference_fps": 30.0}
    payload["timing"] = {"sequence_seconds": 2.0, "interval_seconds": 1 / 3, "min_seconds": 1.5}
    save_checkpoint(tmp_path / "slower.pt", payload)
    stack = load_serving_model(tmp_path / "slower.pt").stack
    assert (stack.sequence_length, stack.interval, stack.min_length) == (60, 10, 45)


def test_a_frame_is_sampled_for_the_moment_it_is_shown_at() -> None:
    def picks(times: list[float], moments: list[float], period: float = 0.1) -> list[tuple[float, float | None]]:
        return [(time, moment) for time, moment, _ in shown_at(times, float, moments, lambda: period)]

    # on time, late, a gap spanning two moments (taken once, for the first), then the end of the clip
    assert picks([0.0, 0.1, 0.25, 0.55, 0.6], [0.0, 0.2, 0.3, 0.4, 0.6, 0.7]) == \
        [(0.0, 0.0), (0.1, 0.2), (0.25, 0.3), (0.55, None), (0.6, 0.6)]
    assert picks([0.0, 0.1 - TOLERANCE / 2], [0.1]) == [(0.0, None), (0.1 - TOLERANCE / 2, 0.1)]  # rounding
    grid = sequence_grid(100, 30)
    assert [next(grid) * 30 for _ in range(6)] == pytest.approx([0, 30, 60, 90, 100, 130])


def test_a_face_sampled_a_third_of_a_second_apart_stays_one_track() -> None:
    """A face 80 px wide moving 60 px between samples overlaps its last box by IoU 0.14 (below 0.2): it is
    still the same face, found in every sample, not two tracks with the rest borrowed boxes."""
    path = [Box(100 + 60 * i, 100, 180 + 60 * i, 180, 0.9) for i in range(6)]
    assert path[0].iou(path[1]) < 0.2
    chosen, found = choose_face([[box] for box in path])
    assert chosen == path and all(found)
    far, big = Box(100 + 250, 100, 180 + 250, 180, 0.9), Box(140, 100, 300, 260, 0.9)
    assert choose_face([[path[0]], [far]])[1] == [True, False]  # three sides away: another face
    assert choose_face([[path[0]], [big]])[1] == [False, True]  # twice the size, not overlapping enough
