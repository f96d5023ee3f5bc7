"""`predict --annotate out.mp4`: the clip again, with the face box and the current emotion on every frame."""

from __future__ import annotations

import bisect
import os
from pathlib import Path

import cv2
import numpy as np

from pipeline.predict import PredictError, Prediction
from pipeline.video import VideoReader

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def _current_window(pred: Prediction, frame: int) -> int:
    """The window whose centre is nearest: the emotion "now" on a timeline of overlapping windows."""
    centres = [(w.start + w.end) / 2 for w in pred.windows]
    return int(np.argmin([abs(c - frame) for c in centres]))


def draw_label(bgr: np.ndarray, box: list[int] | None, text: str) -> None:
    scale = max(0.5, bgr.shape[1] / 900)
    thick = max(1, round(scale * 2))
    if box is not None:
        cv2.rectangle(bgr, (box[0], box[1]), (box[2], box[3]), (0, 220, 0), thick)
        org = (box[0], max(box[1] - 8, 20))
    else:
        org = (10, 30)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(bgr, (org[0], org[1] - h - base), (org[0] + w, org[1] + base), (0, 0, 0), -1)
    cv2.putText(bgr, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def write_annotated(pred: Prediction, out: Path) -> int:
    """Writes ``out`` (mp4/avi) and returns the number of frames written; the file appears only when complete."""
    out = Path(out)
    fourcc = FOURCC.get(out.suffix.lower())
    if fourcc is None:
        raise PredictError(f"--annotate {out}: use a .mp4 or .avi file name")
    if pred.kind != "video":
        raise PredictError("--annotate needs a video; for an image the printed answer is all there is")
    sampled = sorted(pred.boxes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    written = 0
    with VideoReader(Path(pred.source)) as reader:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), reader.fps, (reader.width, reader.height))
        if not writer.isOpened():
            raise PredictError(f"--annotate {out}: OpenCV cannot write this format here; try .avi")
        try:
            for index, bgr in reader.frames(lambda i: True):
                at = bisect.bisect_right(sampled, index) - 1
                box = pred.boxes[sampled[max(at, 0)]] if sampled else None
                window = pred.windows[_current_window(pred, index)]
                label = pred.classes[int(window.probs.argmax())]
                draw_label(bgr, box, f"{label} {window.probs.max():.0%}")
                writer.write(bgr)
                written += 1
        finally:
            writer.release()
    if written == 0:
        tmp.unlink(missing_ok=True)
        raise PredictError(f"{pred.source}: no frame could be decoded for --annotate")
    os.replace(tmp, out)
    return written
