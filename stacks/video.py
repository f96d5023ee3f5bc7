"""Decode a clip once, in presentation order, as a player shows it: upright, with each frame's time.

The one decoding path of the project (`prepare`, `predict`, `live`, `--annotate`). PyAV (FFmpeg)
gives what a phone's or a browser's clip needs and OpenCV's capture does not: the display-matrix
rotation of a portrait clip, each frame's presentation timestamp (variable frame rate), the streams
(an audio-only file is named as such), and webm files whose header has no duration or frame count.
A frame is converted to BGR (and rotated) only when it is used, so frames that are not sampled cost
only their decode. Memory stays bounded by one sequence of sampled frames, whatever the clip's length.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from stacks.mp4 import mp4_track
from stacks.timegrid import TOLERANCE, sequence_grid, shown_at

# Containers without a frame index (mkv, webm) give a length estimated from the duration, which
# can be off by a frame or two; a decision made from it allows for that.
HINT_SLACK = 2
FALLBACK_FPS = 30.0  # containers that report no or a nonsense rate: the journal-clip norm


def hopeless(frames_hint: int, min_length: int) -> bool:
    """True when a container's frame count says a stretch cannot reach ``min_length`` frames."""
    return frames_hint > 0 and frames_hint + HINT_SLACK < min_length


def hopeless_seconds(seconds_hint: float, fps: float, min_seconds: float) -> bool:
    """True when a container's duration says a stretch cannot last ``min_seconds`` (``hopeless`` in time)."""
    return seconds_hint > 0 and seconds_hint + HINT_SLACK / fps + TOLERANCE < min_seconds


class VideoError(Exception):
    """A clip that cannot be decoded; the message is the reason shown to the user."""


def ffmpeg_reason(exc: Exception) -> str:
    """FFmpeg's own words for what went wrong, whole, without its error number and the path the user knows."""
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror).strip()
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def frame_bgr(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame's BGR pixels.

    8-bit limited-range 4:2:0 (``yuv420p``: what phones and most encoders write) goes through OpenCV's
    conversion, about 16x faster than PyAV's swscale one (0.44 against 7.2 ms for a 640x480 frame,
    measured side by side): that call was half of `prepare`'s time per clip. Both use BT.601's limited
    range and differ by rounding only (at most 3 grey levels, tested). Every other format (full-range
    ``yuvj420p``, 10-bit, 4:2:2, odd sizes) goes through PyAV, which knows its range and depth."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


@dataclass
class DecodedFrame:
    """One decoded frame: its place in the clip and its time; the pixels are converted on demand."""

    index: int  # position in presentation order, from 0
    time: float  # seconds since the clip's first frame
    frame: av.VideoFrame
    rotation: int  # degrees counter-clockwise a player turns it (the display matrix), 0/90/180/270

    def bgr(self) -> np.ndarray:
        """The frame as a player shows it: BGR uint8, turned upright."""
        pixels = frame_bgr(self.frame)
        if self.rotation:
            pixels = np.ascontiguousarray(np.rot90(pixels, self.rotation // 90))
        return pixels


@dataclass
class SampledSequence:
    """The sampled frames of one sequence (``sequence_seconds`` of the clip)."""

    chunk: int
    start: int  # index of the window's first frame in the clip
    n_frames: int = 0  # frames of the clip that fall in this window (fewer at the end)
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (clip frame index, BGR)
    decoded: bool = True  # False: a tail too short to use, counted from the container, not decoded
    times: list[float] = field(default_factory=list)  # seconds of each sampled frame, beside ``frames``
    seconds: float = 0.0  # how long the frames of this sequence last (frame count / fps at a constant rate)


def _rotation(frame: av.VideoFrame) -> int:
    """The display matrix's turn rounded to a quarter (phones write 0, 90, 180 or 270)."""
    try:
        degrees = float(frame.rotation or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
    return int(round(degrees / 90.0)) % 4 * 90


class VideoReader:
    """One opened clip. Use as a context manager so the decoder is always released."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        """``threads``: FFmpeg decoding threads; None leaves FFmpeg's choice (one per CPU)."""
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError("file not found")
        if self.path.stat().st_size == 0:
            raise VideoError("empty file (0 bytes): was the recording or the copy cut off?")
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, UnicodeDecodeError) as exc:
            raise VideoError(f"unreadable: FFmpeg cannot open it ({ffmpeg_reason(exc)}: a corrupt file or not a "
                             "video)") from None
        streams = self._container.streams.video
        if not streams:
            kinds = sorted({s.type for s in self._container.streams}) or ["nothing"]
            self._container.close()
            raise VideoError(f"no video stream (the file holds {' and '.join(kinds)} only)")
        self._stream = stream = streams[0]
        context = stream.codec_context
        context.thread_type = "AUTO"
        context.thread_count = 0 if threads is None else max(1, threads)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        # Some containers report nonsense (0 or 90000); 30 fps is the journal-clip norm.
        self.fps = fps if 1.0 <= fps <= 240.0 else FALLBACK_FPS
        self.fps_reported = fps
        # What the container claims; can be approximate or absent (a browser's webm), so only used to
        # set hopeless stretches aside early.
        self.seconds_hint = _stream_seconds(stream, self._container)
        self.frame_count_hint = int(stream.frames or 0) or int(round(self.seconds_hint * self.fps))
        self.frames_decoded = 0
        self._first: DecodedFrame | None = None
        self._iter: Iterator[DecodedFrame] | None = None
        self._origin: float | None = None
        self._min_gap = math.inf

    # The first frame tells the picture's size and turn; it is decoded once and handed out again.
    def _peek(self) -> DecodedFrame | None:
        if self._first is None and self._iter is None:
            self._iter = self._decode()
            self._first = next(self._iter, None)
        return self._first

    @property
    def rotation(self) -> int:
        first = self._peek()
        return first.rotation if first is not None else 0

    @property
    def width(self) -> int:
        """Displayed width: a portrait clip's, once turned."""
        w, h = self._stream.codec_context.width, self._stream.codec_context.height
        return h if self.rotation in (90, 270) else w

    @property
    def height(self) -> int:
        w, h = self._stream.codec_context.width, self._stream.codec_context.height
        return w if self.rotation in (90, 270) else h

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def period(self) -> float:
        """How long a frame is shown: the shortest gap between frames so far (a variable-rate clip's native
        period, not its lower average rate), else 1 / fps."""
        return self._min_gap if self._min_gap < math.inf else 1.0 / self.fps

    def _decode(self) -> Iterator[DecodedFrame]:
        index, previous = 0, None
        try:
            for frame in self._container.decode(self._stream):
                time = frame.time
                if time is None:
                    time = index / self.fps
                if self._origin is None:
                    self._origin = time
                if previous is not None and time - previous > 1e-6:
                    self._min_gap = min(self._min_gap, time - previous)
                previous = time
                yield DecodedFrame(index, time - self._origin, frame, _rotation(frame))
                index += 1
        except av.FFmpegError as exc:
            if index == 0:
                raise VideoError(f"unreadable: no frame could be decoded ({ffmpeg_reason(exc)})") from None
            raise VideoError(f"decoding failed after {index} frames ({ffmpeg_reason(exc)}): the file looks damaged "
                             "or cut short; record or copy it again") from None

    def decoded(self) -> Iterator[DecodedFrame]:
        """Every frame, in presentation order (BGR not yet converted). One pass per reader."""
        self._peek()
        if self._first is not None:
            self.frames_decoded += 1
            yield self._first
        self._first = None
        assert self._iter is not None
        for item in self._iter:
            self.frames_decoded += 1
            yield item

    def frames(self, wanted: Callable[[int], bool] = lambda i: True, stop: int | None = None,
               ) -> Iterator[tuple[int, np.ndarray | None]]:
        """Yield ``(index, frame)`` for frames before ``stop``; ``frame`` is None where ``wanted`` is False."""
        for item in self.decoded():
            if stop is not None and item.index >= stop:
                return
            yield item.index, item.bgr() if wanted(item.index) else None

    def sampled(self, moments: Iterable[float], seen: Callable[[float], None] | None = None,
                ) -> Iterator[tuple[DecodedFrame, float, np.ndarray]]:
        """The frame shown at each of ``moments`` (s, by presentation time), the moment, the upright BGR pixels.

        ``seen(time)`` is told every frame's time, sampled or not (the clip's length is the last one's).
        """
        for item, moment, _ in shown_at(self.decoded(), _time, moments, self.period):
            if seen is not None:
                seen(item.time)
            if moment is not None:
                yield item, moment, item.bgr()

    def sequences(self, sequence_length: int, interval: int, min_length: int = 1,
                  on_sample: Callable[[int, np.ndarray], None] | None = None,
                  reference_fps: float = 30.0) -> Iterator[SampledSequence]:
        """Cut the clip into consecutive sequences in time and keep the frames shown at the sampled moments.

        Lengths are in frames at ``reference_fps`` (90 -> 3 s): a sequence covers the same seconds at any
        frame rate, and each sampled frame is the one shown at its moment (by presentation timestamp),
        so a 30 fps, a 60 fps and a variable-rate clip of the same scene give the same samples.

        ``on_sample(index, frame)`` sees each sampled frame as soon as it is decoded, before its
        sequence is complete, so that work on it can start while decoding goes on.

        Decoding stops where the container's duration says the rest cannot make a sequence of
        ``min_length``: a 4 s clip at 3 s sequences would otherwise decode 1 s (25%) only to drop it.
        That tail is still yielded, empty, so its drop is reported.
        """
        seq_s, min_s = sequence_length / reference_fps, min_length / reference_fps
        hint = self.seconds_hint
        stop = next((c * seq_s for c in range(int(math.ceil(hint / seq_s)) if hint > 0 else 0)
                     if hopeless_seconds(hint - c * seq_s, self.fps, min_s)), None)
        stopped = False

        def until_stop() -> Iterator[DecodedFrame]:
            nonlocal stopped
            for item in self.decoded():
                if stop is not None and item.time >= stop - TOLERANCE:
                    stopped = True
                    self.frames_decoded -= 1  # decoded only to learn its time: not part of the clip's use
                    return
                yield item

        current: SampledSequence | None = None
        moments = sequence_grid(sequence_length, interval, reference_fps)
        if stop is not None:
            moments = itertools.takewhile(lambda m: m < stop - TOLERANCE, moments)
        for item, moment, until in shown_at(until_stop(), _time, moments, self.period):
            # A frame belongs to the sequence of the moment it is sampled for (the frame shown at 3.0 s
            # may start at 2.96 s), else to the one its own time falls in.
            chunk = int(((moment if moment is not None else item.time) + TOLERANCE) // seq_s)
            if current is None or current.chunk != chunk:
                if current is not None:
                    yield current
                current = SampledSequence(chunk=chunk, start=item.index)
            current.n_frames += 1
            current.seconds = until - chunk * seq_s
            if moment is not None:
                bgr = item.bgr()
                current.frames.append((item.index, bgr))
                current.times.append(item.time)
                if on_sample is not None:
                    on_sample(item.index, bgr)
        if current is not None:
            yield current
        if stopped and stop is not None:
            rest = max(hint - stop, 0.0)
            yield SampledSequence(int(round(stop / seq_s)), self.frames_decoded, int(round(rest * self.fps)),
                                  decoded=False, seconds=rest)


def _time(item: DecodedFrame) -> float:
    return item.time


def _stream_seconds(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> float:
    """The video stream's duration in seconds from the header; 0.0 when it does not say (live webm)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    return 0.0


def decode_threads(workers: int, cpus: int | None = None) -> int:
    """FFmpeg threads per clip when ``workers`` clips decode at once, each beside a face-search thread.

    FFmpeg gives every decoder one thread per CPU; with several clips at once that oversubscribes
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


def probe_length(path: Path) -> tuple[int, float, float]:
    """(frames, seconds, fps) from the clip's header, 0 where it does not say; VideoError if unreadable.

    MP4/MOV headers are read directly (``mp4.mp4_track``, 0.03 ms against 2 ms to open the container);
    such a file that cannot be decoded after all is then found, and recorded, when its turn comes.
    Other files are opened: opening reads the stream headers only.
    """
    track = mp4_track(path)
    if track is not None and track.frames:
        seconds = track.seconds
        fps = track.frames / seconds if seconds > 0 else FALLBACK_FPS
        return track.frames, seconds, fps if 1.0 <= fps <= 240.0 else FALLBACK_FPS
    with VideoReader(path, threads=1) as reader:
        return reader.frame_count_hint, reader.seconds_hint, reader.fps
