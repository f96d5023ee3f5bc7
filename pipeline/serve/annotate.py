"""`predict --annotate out.mp4`: the clip again, with the face box and the current emotion on every frame."""

from __future__ import annotations

import bisect
import os
from pathlib import Path

import cv2
import numpy as np

from pipeline.serve.predict import PredictError, Prediction
from stacks.timegrid import TOLERANCE
from stacks.video import VideoError, VideoReader

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def _current_window(pred: Prediction, time: float) -> int | None:
    """Of the windows holding the moment ``time`` (s), the one whose centre is nearest: the emotion "now" on
    a timeline of overlapping windows. None where no window with a face covers it."""
    holding = [i for i, w in enumerate(pred.windows) if w.start_s - TOLERANCE <= time < w.end_s - TOLERANCE]
    if not holding:
        return None
    return min(holding, key=lambda i: abs((pred.windows[i].start_s + pred.windows[i].end_s) / 2 - time))


def check_annotate_path(out: Path, source: Path) -> None:
    """Before any work: a format OpenCV can write, and never the input clip itself."""
    if Path(out).suffix.lower() not in FOURCC:
        raise PredictError(f"--annotate {out}: use a file name ending in one of {', '.join(FOURCC)}")
    if Path(out).resolve() == Path(source).resolve():
        raise PredictError(f"--annotate {out} is the input clip: choose another file name")


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
    """Writes ``out`` (mp4/avi) and returns the number of frames written; the file appears only when complete.

    Each frame shows the box of the nearest earlier sampled frame where the face was really detected
    (none where it was not), and the label of the current window."""
    out = Path(out)
    check_annotate_path(out, Path(pred.source))
    if pred.kind != "video":
        raise PredictError("--annotate needs a video; for an image the printed answer is all there is")
    sampled = sorted(pred.boxes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    written, writer = 0, None
    try:
        with VideoReader(Path(pred.source)) as reader:  # upright, as the prediction saw it
            for item in reader.decoded():
                index, bgr = item.index, item.bgr()
                if writer is None:  # sized from the first decoded frame, not the container's claim
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC[out.suffix.lower()]),
                                             reader.fps, (bgr.shape[1], bgr.shape[0]))
                    if not writer.isOpened():
                        raise PredictError(f"--annotate {out}: OpenCV cannot write there (folder not writable, "
                                           "or no encoder for this format: try .avi)")
                at = bisect.bisect_right(sampled, index) - 1
                near = sampled[at] if at >= 0 else None
                box = pred.boxes[near] if near is not None and pred.found.get(near) else None
                current = _current_window(pred, item.time)
                if current is None:
                    text = "no face"
                else:
                    window = pred.windows[current]
                    text = f"{pred.classes[int(window.probs.argmax())]} {window.probs.max():.0%}"
                draw_label(bgr, box, text)
                writer.write(bgr)
                written += 1
        if writer is not None:
            writer.release()
        if written == 0:
            raise PredictError(f"{pred.source}: no frame could be decoded for --annotate")
        os.replace(tmp, out)
    except VideoError as exc:
        raise PredictError(f"{pred.source}: {exc}") from exc
    finally:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
    return written
