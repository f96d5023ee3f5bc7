"""Classify one clip or image with a served model, through the same stack code as `prepare`.

A clip is read once (the frame shown every interval, by presentation time: ``timegrid``; upright, as a
player shows it), cut into overlapping windows of the model's sequence length (a time), and each
window becomes exactly the stack `prepare` would have made of it (``stackmaker.stack_detected``: same
face choice, crop, margin, size, padding), resized as training resized it. A stack model classifies
each window's stack; a frame model classifies each sampled face and averages its probabilities over
the window. The clip's answer is the mean over windows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.served import ServingModel
from stacks.faces import quiet_background_finder, quiet_thread_finder
from stacks.maker import find_faces, stack_detected
from stacks.resize import resize_stack
from stacks.settings import IMAGE_EXTENSIONS, REFERENCE_FPS, VIDEO_EXTENSIONS
from stacks.timegrid import TOLERANCE, interval_grid
from stacks.video import VideoError, VideoReader, decode_threads
from stacks.windows import SampledFrame, Window, WindowPlan, detect_frames, windows

MIN_SECONDS = 1.0


class PredictError(Exception):
    """A clip that cannot be classified; the message is one line the user can act on."""


@dataclass
class WindowResult:
    start: int  # first clip frame of the window
    end: int  # one past its last clip frame (at the clip's nominal rate)
    probs: np.ndarray
    face_ratio: float
    start_s: float = 0.0  # the window's time span in the clip, seconds
    end_s: float = 0.0


@dataclass
class Prediction:
    """The answer for one clip or image, with the per-window timeline and the face box of every sampled frame."""

    source: str
    kind: str  # "video" or "image"
    classes: tuple[str, ...]
    probs: np.ndarray
    face_ratio: float  # share of sampled frames where the face was detected
    fps: float = 0.0
    frames: int = 1
    windows: list[WindowResult] = field(default_factory=list)
    boxes: dict[int, list[int]] = field(default_factory=dict)  # sampled frame -> face box [x0, y0, x1, y1]
    found: dict[int, bool] = field(default_factory=dict)  # sampled frame -> face detected there (not carried over)
    duration: float = 0.0  # seconds of the clip: last frame's time + one frame period (frames / fps at a constant rate)
    no_face: list[tuple[float, float]] = field(default_factory=list)  # (start_s, end_s) of windows without a face
    faces_seen: int = 1  # faces in view at once (in two sampled frames at least); the answer follows the main one
    sequence_s: float = 0.0  # the model's window: a shorter clip is padded with its last face
    header_s: float = 0.0  # the length the container's header claims (0: it does not say)

    @property
    def label(self) -> str:
        return self.classes[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))

    def seconds(self, frame: int) -> float:
        """A frame index as seconds at the clip's nominal rate; the clip's own length is ``duration``."""
        return frame / self.fps if self.fps else 0.0

    def to_dict(self) -> dict:
        return {
            "source": self.source, "label": self.label, "confidence": round(self.confidence, 6),
            "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, self.probs)},
            "face_ratio": round(self.face_ratio, 4), "kind": self.kind, "frames": self.frames,
            "seconds": round(self.duration, 3), "windows": [
                {"start_s": round(w.start_s, 3), "end_s": round(w.end_s, 3),
                 "label": self.classes[int(np.argmax(w.probs))],
                 "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, w.probs)},
                 "face_ratio": round(w.face_ratio, 4)} for w in self.windows],
            "no_face": [{"start_s": round(a, 3), "end_s": round(b, 3)} for a, b in self.no_face],
            "faces_seen": self.faces_seen,
        }


@dataclass
class StackedWindow:
    """A window made into model input. It keeps frame indices, not frames: a long clip holds one window
    of decoded frames at a time."""

    start: int  # first sampled clip frame
    start_s: float  # its time
    indices: list[int]  # the window's real sampled frames (padding not included)
    array: np.ndarray  # (samples, S, S) uint8, already at the network's size
    boxes: list[list[int]]
    found: list[bool]


def stack_window(window: Window, model: ServingModel) -> StackedWindow | None:
    """The window's stack, or None when no sampled frame in it shows a face."""
    # A served window without a face gets no answer, whatever --on-no-face the training data used.
    settings = dataclasses.replace(model.stack, on_no_face="skip")
    channels = model.channels if model.kind == "stack" else len(window.frames)
    made = stack_detected([(f.index, f.bgr) for f in window.frames], [f.faces for f in window.frames],
                          settings, channels)
    if made is None:
        return None
    return StackedWindow(window.start, window.start_time, [f.index for f in window.frames],
                         resize_stack(made.array, model.inputs.image_size), made.boxes, made.found)


BATCH = 256  # inputs per model call: a long clip's faces are not one giant batch


def run_batched(model: ServingModel, inputs: np.ndarray) -> np.ndarray:
    """``model.run`` over ``inputs`` in batches of ``BATCH``."""
    return np.concatenate([model.run(inputs[i:i + BATCH]) for i in range(0, len(inputs), BATCH)])


def classify_stacks(model: ServingModel, stacked: list[StackedWindow]) -> list[np.ndarray]:
    """One probability vector per window; a frame model's is the mean over the window's faces.

    Overlapping windows share sampled frames, and a frame cut with the same box is the same face:
    a frame model classifies each distinct (frame, box) once (24 faces instead of 36 in a 4 s clip).
    """
    if model.kind == "stack":
        return list(run_batched(model, np.stack([s.array for s in stacked])))
    keys = [(index, tuple(box)) for s in stacked for index, box in zip(s.indices, s.boxes, strict=True)]
    row_of: dict[tuple[int, tuple[int, ...]], int] = {}  # distinct face -> its row in the model's input
    picks: list[int] = []  # position in ``keys`` of each distinct face's first appearance
    for pos, key in enumerate(keys):
        if key not in row_of:
            row_of[key] = len(picks)
            picks.append(pos)
    faces = np.concatenate([s.array for s in stacked])
    probs = run_batched(model, faces[picks][:, None])[[row_of[key] for key in keys]]
    out, start = [], 0
    for s in stacked:
        n = len(s.array)
        out.append(probs[start:start + n].mean(axis=0))
        start += n
    return out


@dataclass
class ClipWindows:
    """A clip's stacked windows and what is needed to judge and time them."""

    stacked: list[StackedWindow]
    frames: int  # frames decoded
    fps: float
    sampled: int  # sampled frames searched for a face
    duration: float = 0.0  # seconds: the last frame's time + one frame period
    faceless: list[float] = field(default_factory=list)  # start (s) of each window without a face
    face_counts: list[int] = field(default_factory=list)  # faces found in each sampled frame
    header_s: float = 0.0  # the length the container's header claims


def clip_windows(path: Path, model: ServingModel, stride: int | None = None,
                 max_seconds: float | None = None) -> ClipWindows:
    """Decode once, find faces in the sampled frames, and stack every window that shows a face.

    ``max_seconds``: a clip that runs past it is refused as soon as decoding gets there, so a long upload
    costs the server no more than a clip of that length (a header's duration can be missing or wrong)."""
    plan = WindowPlan.for_stack(model.stack, stride)
    finder = quiet_background_finder(model.stack.detector)
    try:
        reader = VideoReader(path, threads=decode_threads(1))
    except VideoError as exc:
        raise PredictError(f"{path}: {exc}") from exc
    out = ClipWindows([], 0, reader.fps, 0)
    last = [-1.0]  # the last frame's time, seen by the grid whether sampled or not
    too_long = [False]

    def seen(time: float) -> None:
        last[0] = time

    with reader:
        def frames():
            for item, moment, bgr in reader.sampled(interval_grid(plan.interval, REFERENCE_FPS), seen):
                if max_seconds is not None and moment > max_seconds + TOLERANCE:
                    too_long[0] = True  # ends the stream as a clip's end would: the faces queued are still awaited
                    return
                out.sampled += 1
                yield item.index, bgr, moment

        def counted(found: Iterator[SampledFrame]) -> Iterator[SampledFrame]:
            for frame in found:
                out.face_counts.append(len(frame.faces))
                yield frame

        try:
            for window in windows(counted(detect_frames(frames(), finder)), plan):
                made = stack_window(window, model)
                if made is not None:
                    out.stacked.append(made)
                else:
                    out.faceless.append(window.start_time)
        except (cv2.error, VideoError) as exc:
            raise PredictError(f"{path}: {exc}" if isinstance(exc, VideoError)
                               else f"{path}: decoding failed ({str(exc).strip()[:120]})") from exc
        out.frames = reader.frames_decoded
        out.duration = last[0] + reader.period() if out.frames else 0.0
        out.header_s = reader.seconds_hint
    if too_long[0]:
        raise PredictError(f"{path}: the clip runs past {max_seconds:g} s, the longest accepted here: trim it, or "
                           "record a shorter one")
    return out


def _video(path: Path, model: ServingModel, stride: int | None, min_seconds: float,
           max_seconds: float | None) -> Prediction:
    clip = clip_windows(path, model, stride, max_seconds)
    if clip.frames == 0:
        raise PredictError(f"{path}: not a video, or a corrupt one (no frame could be decoded)")
    if clip.duration < min_seconds - TOLERANCE:
        raise PredictError(f"{path}: the clip is {clip.duration:.2f} s long; at least {min_seconds:g} s is needed: "
                           "record a longer one")
    if not clip.stacked:
        raise PredictError(f"{path}: no face found in any of the {clip.sampled} sampled frames")
    pred = _assemble(path, "video", model, clip.stacked, clip.fps, clip.frames, clip.sampled, clip.duration)
    pred.no_face = [(start, min(start + model.stack.sequence_seconds, clip.duration)) for start in clip.faceless]
    pred.faces_seen = faces_in_view(clip.face_counts)
    pred.header_s = clip.header_s
    return pred


def faces_in_view(counts: list[int]) -> int:
    """The most faces found together in two sampled frames at least: one false face in one frame (a pattern
    on a wall) does not make a crowd. At least 1, as the clip was answered."""
    at_least = sorted(counts, reverse=True)
    return max(1, at_least[1] if len(at_least) > 1 else (at_least[0] if at_least else 1))


def _image(path: Path, model: ServingModel) -> Prediction:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PredictError(f"{path}: not an image OpenCV can read (corrupt or unknown format)")
    frame = SampledFrame(0, bgr, find_faces(quiet_thread_finder(model.stack.detector), bgr))
    made = stack_window(Window([frame]), model)
    if made is None:
        raise PredictError(f"{path}: no face found in the image")
    pred = _assemble(path, "image", model, [made], 0.0, 1, 1, 0.0)
    pred.faces_seen = len(frame.faces)
    return pred


def _assemble(path: Path, kind: str, model: ServingModel, stacked: list[StackedWindow], fps: float,
              n_frames: int, sampled: int, duration: float) -> Prediction:
    """``sampled``: every sampled frame of the source, faceless windows' included (the face share's base)."""
    probs = classify_stacks(model, stacked)
    results, boxes, found = [], {}, {}
    seconds = model.stack.sequence_seconds
    length = round(seconds * fps) if fps else model.stack.sequence_length
    for s, p in zip(stacked, probs):
        real = len(s.indices)
        results.append(WindowResult(s.start, min(s.start + length, n_frames), p, sum(s.found[:real]) / real,
                                    s.start_s, min(s.start_s + seconds, duration)))
        for index, box, hit in zip(s.indices, s.boxes, s.found):
            boxes[index] = box
            found[index] = found.get(index, False) or hit
    return Prediction(str(path), kind, model.classes, np.mean(probs, axis=0), sum(found.values()) / max(sampled, 1),
                      fps, n_frames, results, boxes, found, duration, sequence_s=seconds)


def predict_file(path: Path, model: ServingModel, stride: int | None = None,
                 min_seconds: float = MIN_SECONDS, max_seconds: float | None = None) -> Prediction:
    """Classify a clip or a still image (by extension); a clip must last from ``min_seconds`` to ``max_seconds``."""
    path = Path(path)
    if not path.exists():
        raise PredictError(f"{path}: no such file")
    if path.is_dir():
        raise PredictError(f"{path} is a folder: use predict_folder")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return _image(path, model)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise PredictError(f"{path}: not a video or image file (expected one of "
                           f"{' '.join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)})")
    return _video(path, model, stride, min_seconds, max_seconds)


def folder_files(folder: Path) -> list[Path]:
    """The clips and images in a folder and its subfolders, sorted."""
    wanted = set(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in wanted)
