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

# Containers without a frame index (mkv, webm) give a count estimated from the duration, which
# can be off by a frame or two; a decision made from the count allows for that.
HINT_SLACK = 2


def hopeless(frames_hint: int, min_length: int) -> bool:
    """True when a container's frame count says a stretch cannot reach ``min_length`` frames."""
    return frames_hint > 0 and frames_hint + HINT_SLACK < min_length


class VideoError(Exception):
    """A clip that cannot be decoded; the message is the reason shown to the user."""


@dataclass
class SampledSequence:
    """The sampled frames of one ``sequence_length`` window of a clip."""

    chunk: int
    start: int  # index of the window's first frame in the clip
    n_frames: int = 0  # frames of the clip that fall in this window (< sequence_length at the end)
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (clip frame index, BGR)
    decoded: bool = True  # False: a tail too short to use, counted from the container, not decoded


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
        # What the container claims; can be approximate, so only used to set hopeless files aside early.
        self.frame_count_hint = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        self.frames_decoded = 0

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._cap.release()

    def frames(self, wanted: Callable[[int], bool], stop: int | None = None,
               ) -> Iterator[tuple[int, np.ndarray | None]]:
        """Yield ``(index, frame)`` for frames before ``stop``; ``frame`` is None where ``wanted`` is False."""
        index = 0
        while stop is None or index < stop:
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

    def sequences(self, sequence_length: int, interval: int, min_length: int = 1) -> Iterator[SampledSequence]:
        """Cut the clip into consecutive windows and keep every ``interval``-th frame of each.

        Decoding stops where the container's frame count says the rest cannot make a window of
        ``min_length`` frames: a 4 s clip at 90-frame windows would otherwise decode 30 frames (25%)
        only to drop them. That tail is still yielded, empty, so its drop is reported.
        """
        hint = self.frame_count_hint
        stop = next((start for start in range(0, hint, sequence_length) if hopeless(hint - start, min_length)), None)
        current: SampledSequence | None = None
        for index, frame in self.frames(lambda i: (i % sequence_length) % interval == 0, stop):
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
        if stop is not None and self.frames_decoded == stop:
            yield SampledSequence(stop // sequence_length, stop, hint - stop, decoded=False)


def probe(path: Path) -> int:
    """The container's frame count (0 when it does not say), without decoding; VideoError if unreadable."""
    with VideoReader(path) as reader:
        return reader.frame_count_hint
