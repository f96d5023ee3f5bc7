"""Turn one source (clip or still image) into face stacks: the code `prepare` and `predict` share.

Everything that decides a stack's pixels lives here and reads only ``StackSettings``, so a model
served later sees exactly the inputs it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from stacks.faces import BackgroundFinder, Box, FaceFinder, center_box, crop_grey, find_faces, square_box
from stacks.settings import StackSettings
from stacks.timegrid import TOLERANCE
from stacks.tracks import choose_face
from stacks.video import SampledSequence, VideoError, VideoReader


class SourceSkipped(Exception):
    """A whole source gives no stack. ``reason`` is a short key, the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class FaceStack:
    """One sequence made into a stack, with what is needed to trace it back to the source."""

    chunk: int
    array: np.ndarray  # (C, size, size) uint8
    frame_indices: list[int]  # source frame behind each channel (padding repeats the last)
    boxes: list[list[int]]  # crop box per channel, source pixels [x0, y0, x1, y1]
    found: list[bool]  # whether the face was detected in that channel's frame
    frames: int  # real source frames in the sequence
    padded: int  # channels filled by repeating the last face
    margins: list[float | None] = field(default_factory=list)  # framing actually cropped (see Crops)
    timestamps: list[float] = field(default_factory=list)  # seconds of each channel's frame (padding repeats)

    @property
    def face_ratio(self) -> float:
        """Share of the real (not padded) sampled frames where the face was detected."""
        real = self.found[: len(self.found) - self.padded]
        return sum(real) / len(real) if real else 0.0


@dataclass
class SourceStacks:
    """All stacks of one source, plus what was dropped and why (for the report)."""

    stacks: list[FaceStack] = field(default_factory=list)
    dropped: list[tuple[int, str, str]] = field(default_factory=list)  # (chunk, reason, detail)
    fps: float = 0.0
    frame_size: tuple[int, int] = (0, 0)  # (width, height)
    frames_decoded: int = 0


class Crops(NamedTuple):
    """The face crops of one sequence, padded to the stack's channels."""

    array: np.ndarray  # (channels, size, size) uint8
    indices: list[int]
    boxes: list[list[int]]
    found: list[bool]
    # Per channel where the face was detected: the margin the crop really has around the face,
    # (crop side / face side - 1) / 2. It is ``--margin`` unless the frame edge cut the box short, which
    # happens in most images of pre-cropped face datasets (FER2013): a model trained on those saw a tighter
    # framing than ``--margin``, and `predict` must crop as tightly (``framing.training_margin``).
    margins: list[float | None]


def stack_frames(frames: list[tuple[int, np.ndarray]], settings: StackSettings, finder: FaceFinder,
                 channels: int) -> Crops | None:
    """Detect, choose one face, crop, and pad to ``channels`` by repeating the last face.

    Returns None when no frame has a face and ``on_no_face`` is ``skip``.
    """
    return stack_detected(frames, [find_faces(finder, bgr) for _, bgr in frames], settings, channels)


def _margin(face: Box, crop: Box, asked: float) -> float:
    """``asked`` unless the frame edge made the crop smaller than asked (beyond a pixel of rounding)."""
    side = max(face.width, face.height, 1e-6)
    if crop.width >= side * (1 + 2 * asked) - 1.0:
        return asked
    return round(max(crop.width / side - 1, 0.0) / 2, 4)


def stack_detected(frames: list[tuple[int, np.ndarray]], detections: list[list[Box]], settings: StackSettings,
                   channels: int) -> Crops | None:
    """``stack_frames`` once the faces are known: `predict` detects each frame once and stacks it in
    every overlapping window, through this same code."""
    chosen, found = choose_face(detections)
    h, w = frames[0][1].shape[:2]
    margins: list[float | None] = [None] * len(frames)
    if not any(found):
        if settings.on_no_face == "skip":
            return None
        boxes = [center_box(w, h)] * len(frames)
    else:
        boxes = [square_box(face, settings.margin, w, h) for face in chosen if face is not None]
        margins = [_margin(face, box, settings.margin) if hit and face is not None else None
                   for face, box, hit in zip(chosen, boxes, found)]
    crops = [crop_grey(bgr, box, settings.size) for (_, bgr), box in zip(frames, boxes)]
    indices = [index for index, _ in frames]
    pad = channels - len(crops)
    crops += [crops[-1]] * pad
    indices += [indices[-1]] * pad
    box_lists = [b.to_list() for b in boxes] + [boxes[-1].to_list()] * pad
    found_list = list(found) + [False] * pad
    return Crops(np.stack(crops), indices, box_lists, found_list, margins + [None] * pad)


def _submitter(finder: FaceFinder | BackgroundFinder) -> Callable[[np.ndarray], Future[list[Box]]]:
    """Start a face search on a BGR frame: in the background where the finder can, else at once."""
    if isinstance(finder, BackgroundFinder):
        return finder.submit

    def now(bgr: np.ndarray) -> Future[list[Box]]:
        done: Future[list[Box]] = Future()
        done.set_result(find_faces(finder, bgr))
        return done

    return now


def video_stacks(path: Path, settings: StackSettings, finder: FaceFinder | BackgroundFinder,
                 threads: int | None = None) -> SourceStacks:
    """Cut a clip into sequences and make a stack of each one that is long enough.

    Each sampled frame goes to the finder as soon as it is decoded, and the stack is made once its
    sequence is complete: with a ``BackgroundFinder`` the search runs while the next frames decode.
    ``threads``: FFmpeg decoding threads (``video.decode_threads``).
    """
    out = SourceStacks()
    pending: dict[int, Future[list[Box]]] = {}
    submit = _submitter(finder)
    try:
        reader = VideoReader(path, threads)
    except VideoError as exc:
        raise SourceSkipped("unreadable", str(exc)) from exc
    with reader:
        seq: SampledSequence
        sequences = reader.sequences(settings.sequence_length, settings.interval, settings.min_length,
                                     on_sample=lambda index, bgr: pending.__setitem__(index, submit(bgr)))
        try:  # the size is the upright picture's: the first frame says how it is turned
            out.fps, out.frame_size = reader.fps, (reader.width, reader.height)
        except VideoError as exc:
            raise SourceSkipped("unreadable", str(exc)) from exc
        for seq in _checked(sequences):
            detections = [pending.pop(index).result() for index, _ in seq.frames]
            if seq.seconds < settings.min_seconds - TOLERANCE:
                reason = "too short" if seq.chunk == 0 else "trailing frames"
                counted = "" if seq.decoded else " (container's count; not decoded)"
                at = "" if abs(reader.fps - 30.0) < 0.01 else f", {seq.seconds:.2f} s at {reader.fps:.2f} fps"
                out.dropped.append((seq.chunk, reason, f"{seq.n_frames} frames{counted}{at} < --min-length "
                                                       f"{settings.min_length}" + (f" ({settings.min_seconds:.2f} s)"
                                                                                   if at else "")))
                continue
            made = stack_detected(seq.frames, detections, settings, settings.channels)
            if made is None:
                out.dropped.append((seq.chunk, "no face", "no face found in any sampled frame"))
                continue
            pad = settings.channels - len(seq.frames)
            out.stacks.append(FaceStack(seq.chunk, made.array, made.indices, made.boxes, made.found, seq.n_frames,
                                        pad, made.margins, [round(t, 6) for t in seq.times + seq.times[-1:] * pad]))
        out.frames_decoded = reader.frames_decoded
    if out.frames_decoded == 0 and not out.dropped:
        raise SourceSkipped("no frames", "the file opens but no frame could be decoded")
    if not out.stacks:
        reasons = {reason for _, reason, _ in out.dropped}
        reason = "too short" if reasons <= {"too short", "trailing frames"} else "no face"
        # The details of that reason only: a faceless clip's "no face" came joined to its trailing frames'.
        raise SourceSkipped(reason, "; ".join(dict.fromkeys(
            detail for _, why, detail in out.dropped if reason == "too short" or why == reason)))
    return out


def _checked(sequences: Iterator[SampledSequence]) -> Iterator[SampledSequence]:
    """Pass sequences through, turning decoder crashes mid-clip into a skip reason."""
    try:
        yield from sequences
    except (cv2.error, VideoError) as exc:
        raise SourceSkipped("unreadable", f"decoding failed: {exc}") from exc


def image_stacks(path: Path, settings: StackSettings, finder: FaceFinder) -> SourceStacks:
    """A still image becomes a 1-channel stack through the same detect/crop code as a clip."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceSkipped("unreadable", "OpenCV cannot read this image (corrupt or unknown format)")
    made = stack_frames([(0, bgr)], settings, finder, channels=1)
    if made is None:
        raise SourceSkipped("no face", "no face found in the image")
    h, w = bgr.shape[:2]
    stack = FaceStack(0, made.array, made.indices, made.boxes, made.found, 1, 0, made.margins)
    return SourceStacks(stacks=[stack], fps=0.0,
                        frame_size=(w, h), frames_decoded=1)
