"""`predict --annotate out.mp4`: the clip again, with the face box and the current emotion on every frame."""

from __future__ import annotations

import bisect
import contextlib
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.serve.predict import PredictError, Prediction
from stacks.timegrid import TOLERANCE
from stacks.video import VideoError, VideoReader, ffmpeg_reason

# H.264 (what browsers and phones play) in MP4, MOV and MKV; MJPEG in AVI, for players of old.
CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "mjpeg"}
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


def _current_window(pred: Prediction, time: float) -> int | None:
    """Of the windows holding the moment ``time`` (s), the one whose centre is nearest: the emotion "now" on
    a timeline of overlapping windows. None where no window with a face covers it."""
    holding = [i for i, w in enumerate(pred.windows) if w.start_s - TOLERANCE <= time < w.end_s - TOLERANCE]
    if not holding:
        return None
    return min(holding, key=lambda i: abs((pred.windows[i].start_s + pred.windows[i].end_s) / 2 - time))


def check_annotate_path(out: Path, source: Path) -> None:
    """Before any work: a format we write, and never the input clip itself."""
    if Path(out).suffix.lower() not in CODECS:
        raise PredictError(f"--annotate {out}: use a file name ending in one of {', '.join(CODECS)}")
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
    """Writes ``out`` and returns the number of frames written; the file appears only when complete.

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
                    writer = _Writer(tmp, out, reader.fps, bgr.shape[1], bgr.shape[0])
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
        if writer is None:
            raise PredictError(f"{pred.source}: no frame could be decoded for --annotate")
        writer.finish()
        os.replace(tmp, out)
    except VideoError as exc:
        raise PredictError(f"{pred.source}: {exc}") from exc
    except (av.FFmpegError, OSError) as exc:  # a full disk, a folder that cannot be written
        raise PredictError(f"--annotate {out}: cannot write it ({ffmpeg_reason(exc)})") from None
    finally:
        if writer is not None:
            writer.abort()
        tmp.unlink(missing_ok=True)
    return written


class _Writer:
    """FFmpeg's encoder through PyAV, at the clip's nominal rate (as OpenCV's writer did). Every frame is
    made the first one's size (a stream that changes size midway is scaled), and an odd width or height,
    which 4:2:0 cannot hold, gets one black pixel more."""

    def __init__(self, tmp: Path, out: Path, fps: float, width: int, height: int) -> None:
        suffix = out.suffix.lower()
        codec = CODECS[suffix]
        self.first = (width, height)
        self.size = (width + width % 2, height + height % 2)
        self.done = False
        self.container = av.open(str(tmp), "w", format=FORMATS[suffix],
                                 options={"movflags": "+faststart"} if FORMATS[suffix] in ("mp4", "mov") else {})
        try:
            self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        except ValueError as exc:  # a PyAV built on an FFmpeg without this encoder
            self.abort()
            raise PredictError(f"--annotate {out}: this PyAV has no {codec} encoder ({exc}); try .avi") from None
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "libx264":
            self.stream.options = {"preset": "veryfast", "crf": "20"}

    def write(self, bgr: np.ndarray) -> None:
        if (bgr.shape[1], bgr.shape[0]) != self.first:
            bgr = cv2.resize(bgr, self.first, interpolation=cv2.INTER_AREA)
        if self.first != self.size:
            bgr = cv2.copyMakeBorder(bgr, 0, self.size[1] - self.first[1], 0, self.size[0] - self.first[0],
                                     cv2.BORDER_CONSTANT, value=(0, 0, 0))
        self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")))

    def finish(self) -> None:
        """Flush the encoder and close the file: it is complete."""
        self.container.mux(self.stream.encode())
        self.done = True
        self.container.close()

    def abort(self) -> None:
        """Close without flushing (after an error or Ctrl-C, or after ``finish``); its own errors would hide the
        first one."""
        if not self.done:
            self.done = True
            with contextlib.suppress(Exception):
                self.container.close()
