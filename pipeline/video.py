"""Decode a clip once, sequentially, converting only the frames that will be used.

``grab()`` advances the decoder without the colour conversion and copy that ``retrieve()`` does,
so frames that are not sampled cost only their decode. Memory stays bounded by one sequence of
sampled frames, whatever the clip's length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


class VideoError(Exception):
    """A clip that cannot be decoded; the message is the reason shown to the user."""


@dataclass
class SampledSequence:
    """The sampled frames of one ``sequence_length`` window of a clip."""

    chunk: int
    start: int  # index of the window's first frame in the clip
    n_frames: int = 0  # frames of the clip that fall in this window (< sequence_length at the end)
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (clip frame index, BGR)


class VideoReader:
    """One opened clip. Use as a context manager so the decoder is always released."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError("file not found")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise VideoError("unreadable: OpenCV/FFmpeg cannot open it (corrupt file or unknown codec)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        # Some containers report nonsense (0 or 90000); 30 fps is the journal-clip norm.
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0
        self.fps_reported = fps
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.frames_decoded = 0

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._cap.release()

    def frames(self, wanted: Callable[[int], bool]) -> Iterator[tuple[int, np.ndarray | None]]:
        """Yield ``(index, frame)`` for every frame; ``frame`` is None where ``wanted`` is False."""
        index = 0
        while True:
            if wanted(index):
                ok, frame = self._cap.read()
                if ok and frame is None:
                    ok = False
            else:
                ok, frame = self._cap.grab(), None
            if not ok:
                return
            self.frames_decoded += 1
            yield index, frame
            index += 1

    def sequences(self, sequence_length: int, interval: int) -> Iterator[SampledSequence]:
        """Cut the clip into consecutive windows and keep every ``interval``-th frame of each."""
        current: SampledSequence | None = None
        for index, frame in self.frames(lambda i: (i % sequence_length) % interval == 0):
            chunk = index // sequence_length
            if current is None or current.chunk != chunk:
                if current is not None:
                    yield current
                current = SampledSequence(chunk=chunk, start=chunk * sequence_length)
            current.n_frames += 1
            if frame is not None:
                current.frames.append((index, frame))
        if current is not None:
            yield current


def probe(path: Path) -> int:
    """The container's frame count (0 when it does not say), without decoding; VideoError if unreadable."""
    with VideoReader(path) as reader:
        count = int(reader._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return max(count, 0)
