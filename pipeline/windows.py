"""Cut a clip (or a camera stream) of any length into overlapping one-sequence windows, decoding it once.

A window samples the same frame offsets inside itself as a `prepare` sequence does (0, k, 2k, ...).
Window starts are multiples of the interval, so every window's samples lie on one grid of frames
(every k-th frame of the clip): each grid frame is decoded and searched for faces once, however
many windows it belongs to. Memory is one window of sampled frames, whatever the clip's length.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from pipeline.config import StackSettings
from pipeline.faces import BackgroundFinder, Box, FaceFinder, find_faces


@dataclass(frozen=True)
class WindowPlan:
    """Window length and step in clip frames; ``stride`` is rounded to a whole number of samples."""

    sequence_length: int
    interval: int
    stride: int

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"--stride must be at least 1 frame (got {self.stride})")

    @classmethod
    def for_stack(cls, stack: StackSettings, stride: int | None = None) -> WindowPlan:
        """Default stride: half a sequence (a 4 s clip at 90-frame windows gives 2 windows)."""
        return cls(stack.sequence_length, stack.interval,
                   stride if stride is not None else max(1, stack.sequence_length // 2))

    @property
    def samples(self) -> int:
        """Sampled frames in a full window: the stack model's channels (90 / 5 -> 18)."""
        return len(range(0, self.sequence_length, self.interval))

    @property
    def step(self) -> int:
        """Windows start every ``step`` sampled frames."""
        return max(1, round(self.stride / self.interval))


@dataclass
class SampledFrame:
    """One grid frame: its index in the clip, the BGR image and the faces found in it."""

    index: int
    bgr: np.ndarray
    faces: list[Box]


@dataclass
class Window:
    """Consecutive sampled frames that make one stack (fewer than ``plan.samples`` only for a short clip)."""

    frames: list[SampledFrame]

    @property
    def start(self) -> int:
        return self.frames[0].index


def detect_frames(frames: Iterable[tuple[int, np.ndarray]], finder: FaceFinder | BackgroundFinder,
                  ahead: int = 4) -> Iterator[SampledFrame]:
    """Find the faces of each sampled frame as it is decoded, in order.

    With a ``BackgroundFinder``, up to ``ahead`` frames are searched on its thread while the next
    ones decode (as `prepare` does); any other finder searches each frame before the next decodes.
    """
    if not isinstance(finder, BackgroundFinder):
        for index, bgr in frames:
            yield SampledFrame(index, bgr, find_faces(finder, bgr))
        return
    queued: deque[tuple[int, np.ndarray, Future[list[Box]]]] = deque()
    for index, bgr in frames:
        queued.append((index, bgr, finder.submit(bgr)))
        if len(queued) > ahead:
            index, bgr, found = queued.popleft()
            yield SampledFrame(index, bgr, found.result())
    while queued:
        index, bgr, found = queued.popleft()
        yield SampledFrame(index, bgr, found.result())


class RollingWindows:
    """Push sampled frames one at a time; a full window comes out every ``plan.step`` samples.

    The push form serves a live camera; ``windows`` wraps it for a file.
    """

    def __init__(self, plan: WindowPlan) -> None:
        self.plan = plan
        self.buffer: deque[SampledFrame] = deque(maxlen=plan.samples)
        self.seen = 0
        self.last_end = 0

    def push(self, frame: SampledFrame) -> Window | None:
        self.buffer.append(frame)
        self.seen += 1
        first = self.seen - self.plan.samples
        if first >= 0 and first % self.plan.step == 0:
            self.last_end = self.seen
            return Window(list(self.buffer))
        return None

    def finish(self) -> Window | None:
        """The window that ends at the last frame when the regular ones stopped short of it; for a clip
        shorter than one window, the single short window (padded later, as `prepare` pads)."""
        if self.seen and self.last_end < self.seen:
            self.last_end = self.seen
            return Window(list(self.buffer))
        return None


def windows(frames: Iterable[SampledFrame], plan: WindowPlan) -> Iterator[Window]:
    """Every window of a finite stream of sampled frames (see ``RollingWindows``)."""
    rolling = RollingWindows(plan)
    for frame in frames:
        if (window := rolling.push(frame)) is not None:
            yield window
    if (window := rolling.finish()) is not None:
        yield window
