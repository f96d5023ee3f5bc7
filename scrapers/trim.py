"""Read a video's length and cut a long video into 3-5 s pieces with OpenCV (mp4v, no audio)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


def probe(path: Path) -> VideoInfo | None:
    """Frame count, rate and size of a video OpenCV can decode; None when it cannot read a frame."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None
        ok, frame = cap.read()
        if not ok or frame is None:
            return None
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if fps <= 0 or not math.isfinite(fps):
            return None
        return VideoInfo(frames=max(frames, 1), fps=fps, width=frame.shape[1], height=frame.shape[0])
    finally:
        cap.release()


def plan_pieces(frames: int, fps: float, min_seconds: float = 3.0, max_seconds: float = 5.0) -> list[tuple[int, int]]:
    """[start, end) frame ranges, each min_seconds..max_seconds long, covering as much of the video as can be.

    Equal pieces when some count of them fits (always from 1.5 x max_seconds up); otherwise (5-6 s with
    the defaults) one max_seconds piece from the start, the tail left out. A video no longer than
    max_seconds is one piece, itself.
    """
    if fps <= 0 or frames <= 0:
        return []
    max_frames = max(1, math.floor(max_seconds * fps + 1e-6))
    min_frames = max(1, math.ceil(min_seconds * fps - 1e-6))
    if frames <= max_frames:
        return [(0, frames)]
    fewest, most = math.ceil(frames / max_frames), frames // min_frames
    if fewest <= most:
        bounds = [round(i * frames / fewest) for i in range(fewest + 1)]
        return list(zip(bounds[:-1], bounds[1:]))
    count = max(1, most)
    length = min(max_frames, frames // count)
    return [(i * length, (i + 1) * length) for i in range(count)]


def cut(src: Path, pieces: list[tuple[int, int]], dests: list[Path], min_frames: int = 1) -> list[tuple[int, int]]:
    """Write frames [start, end) of ``src`` to each dest (mp4v, the source's frame rate).

    Returns the ranges really written: a decoder that runs out of frames early shortens the last pieces;
    a piece left with fewer than ``min_frames`` frames is deleted and reported as (start, start).
    """
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise OSError(f"cannot open {src}")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 30.0)
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    written: list[tuple[int, int]] = []
    index = 0
    try:
        for (start, end), dest in zip(pieces, dests):
            writer = None
            count = 0
            while index < end:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                if index >= start:
                    if writer is None:
                        writer = cv2.VideoWriter(str(dest), fourcc, fps, (frame.shape[1], frame.shape[0]))
                        if not writer.isOpened():
                            raise OSError(f"OpenCV cannot write {dest}")
                    writer.write(frame)
                    count += 1
                index += 1
            if writer is not None:
                writer.release()
            if count < min_frames:
                dest.unlink(missing_ok=True)
                written.append((start, start))
            else:
                written.append((start, start + count))
    finally:
        cap.release()
    return written
