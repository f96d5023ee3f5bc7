"""The MP4/MOV header read that `prepare` probes clips with: the count OpenCV gives, or None."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from stacks.mp4 import mp4_frame_count
from stacks.video import VideoError, probe_length
from tests.conftest import SMALL, make_corrupt_file, make_face_clip


def _opencv_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


def _h264(src: Path, dst: Path, *extra: str) -> Path:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-an",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra, str(dst)], check=True)
    return dst


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, head: np.ndarray) -> dict[str, Path]:
    """The same 2 s clip as OpenCV writes it (mp4v, header at the end), as FFmpeg writes H.264 (header
    at the end), with the header moved to the front (``+faststart``), and as a .mov."""
    folder = tmp_path_factory.mktemp("mp4")
    mp4v = make_face_clip(head, folder / "mp4v.mp4", seconds=2.0, fps=25.0, size=SMALL).path
    return {
        "mp4v": mp4v,
        "h264": _h264(mp4v, folder / "h264.mp4"),
        "faststart": _h264(mp4v, folder / "faststart.mp4", "-movflags", "+faststart"),
        "mov": _h264(mp4v, folder / "clip.mov"),
    }


@pytest.mark.parametrize("kind", ["mp4v", "h264", "faststart", "mov"])
def test_header_count_is_opencvs_count(clips: dict[str, Path], kind: str) -> None:
    assert mp4_frame_count(clips[kind]) == _opencv_count(clips[kind]) == 50
    assert probe_length(clips[kind])[0] == 50


def test_what_the_header_cannot_tell_gives_none(clips: dict[str, Path], tmp_path: Path) -> None:
    data = clips["h264"].read_bytes()  # the header (moov) is at the end: cut it off
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    renamed = tmp_path / "clip.avi"
    shutil.copy(clips["mp4v"], renamed)
    assert mp4_frame_count(truncated) is None
    assert mp4_frame_count(make_corrupt_file(tmp_path / "noise.mp4")) is None
    assert mp4_frame_count(tmp_path / "missing.mp4") is None
    assert mp4_frame_count(renamed) is None  # not a suffix it reads: OpenCV is asked instead
    assert probe_length(renamed)[0] == 50


def test_probe_still_reports_what_opencv_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(VideoError):
        probe_length(make_corrupt_file(tmp_path / "noise.mp4"))
    with pytest.raises(VideoError):
        probe_length(tmp_path / "missing.mp4")
