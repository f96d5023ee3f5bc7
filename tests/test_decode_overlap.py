"""Prepare's overlap of decoding with face search, and its thread budget: same stacks, less time."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from stacks.faces import BackgroundFinder, Box, DetectionFinder, crop_grey, find_faces
from stacks.maker import video_stacks
from stacks.settings import StackSettings
from stacks.video import VideoReader, decode_threads, serial_opencv
from tests.conftest import SMALL, make_face_clip


def test_background_finder_finds_what_the_finder_finds_on_its_own_thread(head: np.ndarray) -> None:
    bgr = cv2.cvtColor(head, cv2.COLOR_RGB2BGR)
    background = BackgroundFinder("detection")
    faces = background.submit(bgr).result()
    assert faces == find_faces(DetectionFinder(), bgr) and len(faces) == 1
    assert background.find(np.full((120, 160, 3), 128, np.uint8)) == []
    searchers = [t for t in threading.enumerate() if t.name.startswith("faces")]
    assert searchers and threading.current_thread() not in searchers


def test_background_search_makes_the_same_stacks_as_searching_in_line(head: np.ndarray, tmp_path: Path) -> None:
    clip = make_face_clip(head, tmp_path / "Happy_0001.mp4", seconds=6.5, size=SMALL, seed=3).path
    settings = StackSettings(size=64)
    in_line = video_stacks(clip, settings, DetectionFinder())
    overlapped = video_stacks(clip, settings, BackgroundFinder("detection"), threads=1)
    assert len(in_line.stacks) == len(overlapped.stacks) == 2  # 195 frames: two 90-frame sequences
    for a, b in zip(in_line.stacks, overlapped.stacks):
        assert np.array_equal(a.array, b.array)
        assert (a.boxes, a.found, a.frame_indices) == (b.boxes, b.found, b.frame_indices)
    assert in_line.dropped == overlapped.dropped and in_line.frames_decoded == overlapped.frames_decoded


def test_one_decoder_thread_decodes_the_same_frames(head: np.ndarray, tmp_path: Path) -> None:
    clip = make_face_clip(head, tmp_path / "clip.mp4", seconds=1.0, size=SMALL).path

    def every_frame(threads: int | None) -> list[np.ndarray]:
        with VideoReader(clip, threads) as reader:
            return [frame for _, frame in reader.frames(lambda i: True)]

    default, single = every_frame(None), every_frame(1)
    assert len(default) == len(single) == 30
    assert all(np.array_equal(a, b) for a, b in zip(default, single))


@pytest.mark.parametrize(("workers", "cpus", "expected"), [(1, 2, 1), (2, 2, 1), (4, 2, 1), (1, 16, 15), (4, 16, 3)])
def test_decode_threads_leave_a_cpu_per_worker_for_its_face_search(workers: int, cpus: int, expected: int) -> None:
    assert decode_threads(workers, cpus) == expected


def test_serial_opencv_is_restored_even_after_an_error() -> None:
    before = cv2.getNumThreads()
    with pytest.raises(RuntimeError), serial_opencv():
        assert cv2.getNumThreads() == 1
        raise RuntimeError("boom")
    assert cv2.getNumThreads() == before


def test_crop_of_a_colour_frame_equals_the_crop_of_its_grey_frame() -> None:
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    box = Box(40, 30, 190, 180)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(crop_grey(bgr, box, 48), crop_grey(grey, box, 48))


def test_predict_searches_ahead_in_order_and_finds_the_same_faces(head: np.ndarray, tmp_path: Path) -> None:
    from stacks.windows import detect_frames

    clip = make_face_clip(head, tmp_path / "clip.mp4", seconds=2.0, size=SMALL, seed=2).path
    with VideoReader(clip) as reader:
        frames = [(i, f) for i, f in reader.frames(lambda i: i % 5 == 0) if f is not None]
    in_line = list(detect_frames(frames, DetectionFinder()))
    ahead = list(detect_frames(iter(frames), BackgroundFinder("detection"), ahead=3))
    assert [f.index for f in ahead] == [f.index for f in in_line] == list(range(0, 60, 5))
    assert [f.faces for f in ahead] == [f.faces for f in in_line]
    assert all(len(f.faces) == 1 for f in ahead)


def test_a_source_that_fails_leaves_no_face_search_running(head: np.ndarray, tmp_path: Path) -> None:
    """The error of a clip that fails mid-way went on while up to four searches were still queued on the
    finder's thread; a `predict` exiting on it then crashed inside MediaPipe (exit 139, 1 run in 4)."""
    from stacks.video import VideoError
    from stacks.windows import detect_frames

    clip = make_face_clip(head, tmp_path / "face.mp4", seconds=1.0, size=SMALL).path
    with VideoReader(clip) as reader:
        frames = [bgr for _, bgr in reader.frames(lambda i: i < 8)][:8]
    handed_out = []

    class Recording(BackgroundFinder):  # the real finder, its futures kept to look at
        def submit(self, bgr: np.ndarray):
            handed_out.append(super().submit(bgr))
            return handed_out[-1]

    def failing_clip():
        yield from enumerate(frames)
        raise VideoError("decoding failed after 8 frames (Invalid data found when processing input)")

    with pytest.raises(VideoError):
        for _ in detect_frames(failing_clip(), Recording("detection")):
            pass
    assert len(handed_out) == 8 and all(future.done() for future in handed_out)
