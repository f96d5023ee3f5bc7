"""Read a video's length and cut a long video into 3-5 s pieces (mp4v, no audio).

Frames are read through ``stacks.video.VideoReader``, the decoder `prepare` and `predict` use, so a
piece shows what they would see: a phone's portrait clip upright, and every frame FFmpeg decodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stacks.video import VideoError, VideoReader


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int  # as displayed: a portrait clip's, once turned upright
    height: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


def probe(path: Path) -> VideoInfo | None:
    """Frame count, rate and displayed size of a video; None when no frame of it can be decoded.

    The count is the header's; a header that gives none (a live webm) has its frames counted by decoding,
    so that such a clip is not taken for a one-frame one.
    """
    try:
        with VideoReader(path, threads=1) as reader:
            width, height = reader.width, reader.height  # decodes the first frame
            frames = reader.decoded()
            if next(frames, None) is None:
                return None
            count = reader.frame_count_hint or 1 + sum(1 for _ in frames)
            return VideoInfo(frames=count, fps=reader.fps, width=width, height=height)
    except VideoError:
        return None


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
    """Write frames [start, end) of ``src`` to each dest (mp4v, the source's frame rate), pieces in order.

    Returns the ranges really written: a clip that runs out of frames early (or stops decoding) shortens
    the last pieces; a piece left with fewer than ``min_frames`` frames is deleted and reported as (start, start).
    """
    try:
        reader = VideoReader(src)
    except VideoError as exc:
        raise OSError(f"cannot open {src}: {exc}") from None
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    written: list[tuple[int, int]] = []
    with reader:
        stop = max((end for _, end in pieces), default=0)
        frames = _frames(reader, lambda i: any(start <= i < end for start, end in pieces), stop)
        for (start, end), dest in zip(pieces, dests):
            writer = None
            count = 0
            try:
                for index, frame in frames if end > start else ():
                    if frame is not None and index >= start:
                        if writer is None:
                            writer = cv2.VideoWriter(str(dest), fourcc, reader.fps, (frame.shape[1], frame.shape[0]))
                            if not writer.isOpened():
                                raise OSError(f"OpenCV cannot write {dest}")
                        writer.write(np.ascontiguousarray(frame))
                        count += 1
                    if index >= end - 1:
                        break
            finally:
                if writer is not None:
                    writer.release()
            if count < min_frames:
                dest.unlink(missing_ok=True)
                written.append((start, start))
            else:
                written.append((start, start + count))
    return written


def _frames(reader: VideoReader, wanted: Callable[[int], bool], stop: int) -> Iterator[tuple[int, np.ndarray | None]]:
    """``reader.frames``, ending where decoding fails: the frames before a broken one are still a clip."""
    try:
        yield from reader.frames(wanted, stop)
    except VideoError:
        return
