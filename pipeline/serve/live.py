"""`cli.py live`: a rolling prediction over the last sequence of a camera (or of a file read like one).

Frames are read as they come; the one shown every interval (the model's, a time: ``timegrid``) is
searched for a face and joins the rolling window, and every ``--every`` frames (at 30 fps) the last
full window is classified through the same ``stack_window`` / ``classify_stacks`` as `predict`. A file
is read through the one decoder (``video.VideoReader``: upright, timed); a camera's frames are timed
by the clock as they arrive.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.served import ServingModel
from pipeline.serve.annotate import draw_label
from pipeline.serve.predict import MIN_SECONDS, PredictError, classify_stacks, stack_window
from stacks.faces import quiet_thread_finder
from stacks.maker import find_faces
from stacks.settings import REFERENCE_FPS
from stacks.timegrid import TOLERANCE, interval_grid, shown_at
from stacks.video import VideoError, VideoReader
from stacks.windows import RollingWindows, SampledFrame, Window, WindowPlan


def _camera_frames(camera: int) -> Iterator[tuple[np.ndarray, float]]:
    """(BGR, seconds since the first frame) as the camera delivers them."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # "[ERROR:0@0.5] ... obsensor ..." above ours
    try:
        cap = cv2.VideoCapture(camera)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        raise PredictError(f"camera {camera} cannot be opened (no camera, or in use); try --source FILE")
    start = None
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            now = time.monotonic()
            start = now if start is None else start
            yield frame, now - start
    finally:
        cap.release()


def _file_frames(path: Path) -> Iterator[tuple[np.ndarray, float]]:
    """(upright BGR, presentation time) of every frame of a file."""
    try:
        reader = VideoReader(path)
    except VideoError as exc:
        raise PredictError(f"{path}: {exc}") from exc
    with reader:
        try:
            for item in reader.decoded():
                yield item.bgr(), item.time
        except VideoError as exc:
            raise PredictError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class LivePrediction:
    """One rolling prediction: at ``time`` seconds into the stream, the last full window's class probabilities
    (in ``ServingModel.classes`` order), or None when that window showed no face."""

    time: float
    probs: np.ndarray | None


def display_available() -> bool:
    """Whether a window can open. On Linux OpenCV's Qt aborts the whole process without a display, rather
    than raising the ``cv2.error`` that other builds raise, so this is asked before the first window."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def window_seconds(model: ServingModel) -> float:
    """How much of the stream one prediction looks at (a full window), in seconds."""
    return model.stack.sequence_length / REFERENCE_FPS


def live_predictions(model: ServingModel, camera: int = 0, source: Path | None = None, every: int | None = None,
                     show: bool = True) -> Iterator[LivePrediction]:
    """The rolling predictions, one as each window completes (the command prints them); ``show``: an OpenCV
    window with the face box and the emotion (q or Esc quits). Close the iterator to release the camera."""
    plan = WindowPlan.for_stack(model.stack, every if every is not None else model.stack.interval * 3)
    if show and not display_available():
        raise PredictError("no display to open a window on: add --no-window")
    frames = _file_frames(source) if source is not None else _camera_frames(camera)
    with contextlib.closing(frames) as stream:  # releases the camera or file however the loop ends
        try:
            yield from _loop(model, stream, plan, show, short_file=source is not None)
        finally:
            if show:
                cv2.destroyAllWindows()


def _classify(window: Window, model: ServingModel) -> tuple[np.ndarray | None, tuple | None, str]:
    """(probabilities or None without a face, the last face box, the text drawn)."""
    stacked = stack_window(window, model)
    if stacked is None:
        return None, None, "no face"
    probs = classify_stacks(model, [stacked])[0]
    label = model.classes[int(probs.argmax())]
    last = len(stacked.indices) - 1
    return probs, stacked.boxes[last] if stacked.found[last] else None, f"{label} {probs.max():.0%}"


def _loop(model: ServingModel, stream: Iterator[tuple[np.ndarray, float]], plan: WindowPlan,
          show: bool, short_file: bool = False) -> Iterator[LivePrediction]:
    """``short_file``: a file that ends before one full window is classified whole, padded as `predict` pads
    a clip of ``MIN_SECONDS`` or more (live gave no answer where predict gave one)."""
    rolling = RollingWindows(plan)
    moments = interval_grid(plan.interval, REFERENCE_FPS)
    finder = quiet_thread_finder(model.stack.detector)
    box, text, now = None, "waiting for a full window", 0.0
    # Each frame comes out once the next has arrived: then it is known whether it was shown at a moment.
    timed = shown_at(enumerate(stream), lambda item: item[1][1], moments, lambda: 1.0 / REFERENCE_FPS)
    for (index, (bgr, now)), moment, _ in timed:
        if moment is not None:
            window = rolling.push(SampledFrame(index, bgr, find_faces(finder, bgr), moment))
            if window is not None:
                probs, box, text = _classify(window, model)
                yield LivePrediction(now, probs)
        if show:
            draw_label(bgr, box, text)
            try:
                cv2.imshow("clip-emotion live (q quits)", bgr)
            except cv2.error as exc:
                raise PredictError("no display to open a window on: add --no-window") from exc
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                return
    if short_file and rolling.last_end == 0 and now + 1.0 / REFERENCE_FPS >= MIN_SECONDS - TOLERANCE:
        window = rolling.finish()
        if window is not None:
            yield LivePrediction(now, _classify(window, model)[0])
