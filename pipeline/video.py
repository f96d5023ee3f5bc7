"""Decode a clip once, sequentially, converting only the frames that will be used.

``grab()`` advances the decoder without the colour conversion and copy that ``retrieve()`` does,
so frames that are not sampled cost only their decode. Memory stays bounded by one sequence of
sampled frames, whatever the clip's length.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.mp4 import mp4_frame_count

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

    def __init__(self, path: Path, threads: int | None = None) -> None:
        """``threads``: FFmpeg decoding threads; None leaves OpenCV's choice (one per CPU)."""
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError("file not found")
        if threads is None:
            self._cap = cv2.VideoCapture(str(self.path))
        else:
            self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, max(1, threads)])
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

    def sequences(self, sequence_length: int, interval: int, min_length: int = 1,
                  on_sample: Callable[[int, np.ndarray], None] | None = None) -> Iterator[SampledSequence]:
        """Cut the clip into consecutive windows and keep every ``interval``-th frame of each.

        ``on_sample(index, frame)`` sees each sampled frame as soon as it is decoded, before its
        window is complete, so that work on it can start while decoding goes on.

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
                if on_sample is not None:
                    on_sample(index, frame)
        if current is not None:
            yield current
        if stop is not None and self.frames_decoded == stop:
            yield SampledSequence(stop // sequence_length, stop, hint - stop, decoded=False)


def decode_threads(workers: int, cpus: int | None = None) -> int:
    """FFmpeg threads per clip when ``workers`` clips decode at once, each beside a face-search thread.

    OpenCV gives every decoder one thread per CPU; with several clips at once that oversubscribes
    the CPUs, and frame threading's hand-offs cost ~30% more CPU per frame than one thread (2 CPUs,
    640x480 H.264). Leaving one CPU per worker for its face search, the rest go to decoding.
    """
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, workers) - 1)


@contextlib.contextmanager
def serial_opencv() -> Iterator[None]:
    """Run OpenCV's own functions (colour conversion, resize) on the calling thread only, meanwhile.

    Clips already run in parallel, one per worker; splitting each small resize across OpenCV's
    pthreads pool as well only adds hand-offs, ~20% more CPU per frame searched (2 CPUs). The
    setting is process-wide, so it is restored on the way out.
    """
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def probe(path: Path) -> int:
    """The clip's frame count (0 when it does not say), without decoding; VideoError if unreadable.

    MP4/MOV headers are read directly (``mp4.mp4_frame_count``, the count FFmpeg would report); such
    a file that cannot be decoded after all is then found, and recorded, when its turn comes. Other
    files are opened with one decoding thread: opening reads the stream headers only.
    """
    count = mp4_frame_count(path)
    if count:
        return count
    with VideoReader(path, threads=1) as reader:
        return reader.frame_count_hint
