"""Cut a clip (or a camera stream) of any length into overlapping one-sequence windows, decoding it once.

A window samples the same moments inside itself as a `prepare` sequence does (0, k, 2k, ... frames
at the reference 30 fps, picked by presentation time: ``timegrid``). Window starts are multiples of
the interval, so every window's samples lie on one grid of moments: each grid frame is decoded and
searched for faces once, however many windows it belongs to. Memory is one window of sampled frames,
whatever the clip's length.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, wait
from dataclasses import dataclass

import numpy as np

from stacks.faces import BackgroundFinder, Box, FaceFinder, find_faces
from stacks.settings import StackSettings


@dataclass(frozen=True)
class WindowPlan:
    """Window length and step in frames at the reference 30 fps (times: 90 -> 3 s); ``stride`` is rounded
    to a whole number of samples."""

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
    """One grid frame: its index in the clip, the BGR image, the faces found in it and the moment (s) it
    was sampled for (its own time, or up to a frame later: ``timegrid``)."""

    index: int
    bgr: np.ndarray
    faces: list[Box]
    time: float = 0.0


@dataclass
class Window:
    """Consecutive sampled frames that make one stack (fewer than ``plan.samples`` only for a short clip)."""

    frames: list[SampledFrame]

    @property
    def start(self) -> int:
        return self.frames[0].index

    @property
    def start_time(self) -> float:
        return self.frames[0].time


def detect_frames(frames: Iterable[tuple[int, np.ndarray] | tuple[int, np.ndarray, float]],
                  finder: FaceFinder | BackgroundFinder, ahead: int = 4) -> Iterator[SampledFrame]:
    """Find the faces of each sampled frame, ``(index, bgr)`` or ``(index, bgr, seconds)``, as it is decoded.

    With a ``BackgroundFinder``, up to ``ahead`` frames are searched on its thread while the next
    ones decode (as `prepare` does); any other finder searches each frame before the next decodes.
    """
    if not isinstance(finder, BackgroundFinder):
        for index, bgr, *time in frames:
            yield SampledFrame(index, bgr, find_faces(finder, bgr), *time)
        return
    queued: deque[tuple[int, np.ndarray, list[float], Future[list[Box]]]] = deque()
    try:
        for index, bgr, *time in frames:
            queued.append((index, bgr, time, finder.submit(bgr)))
            if len(queued) > ahead:
                index, bgr, time, found = queued.popleft()
                yield SampledFrame(index, bgr, found.result(), *time)
    except BaseException:
        # A clip that fails mid-way (or a Ctrl-C): the searches still queued must end before the error goes
        # on. A process that exited on it while the finder's thread was inside MediaPipe could crash
        # (exit 139 in 1 of 4 `predict` runs on a cut-off MP4).
        wait([found for *_, found in queued if not found.cancel()])
        raise
    while queued:
        index, bgr, time, found = queued.popleft()
        yield SampledFrame(index, bgr, found.result(), *time)


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
