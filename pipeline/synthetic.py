"""Make labelled face clips from a still photo, for the demo, the tests and the benchmarks.

No labelled face video can be downloaded here, so a clip is a real face photo moved across a
larger frame: a pan, a small zoom and rotation, a lighting drift, written with a real codec. The
per-frame affine transforms are returned so a test can say where the face must be in each frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Where the face is in skimage's astronaut photo (512x512 RGB, public domain), read off the image
# by eye: the head crop we paste, and in that crop the face (hairline to chin, cheek to cheek)
# and its landmarks. Tests check crop boxes against these, not against MediaPipe's own output.
ASTRONAUT_HEAD = (0, 0, 320, 300)  # x0, y0, x1, y1 of the crop taken from the photo
ASTRONAUT_FACE = (180, 72, 272, 176)  # x0, y0, x1, y1 of the face in that crop
ASTRONAUT_LANDMARKS = {"left_eye": (200, 102), "right_eye": (246, 102), "mouth": (222, 146)}


@dataclass(frozen=True)
class ClipTruth:
    """What was drawn: one 2x3 affine matrix per frame mapping photo pixels to frame pixels."""

    path: Path
    fps: float
    n_frames: int
    size: tuple[int, int]  # (width, height)
    transforms: np.ndarray  # (n_frames, 2, 3)

    def where(self, x: float, y: float) -> np.ndarray:
        """Frame coordinates of photo point (x, y) in every frame: (n_frames, 2)."""
        return self.transforms[:, :, :2] @ np.array([x, y], dtype=np.float64) + self.transforms[:, :, 2]


def astronaut_head() -> np.ndarray:
    """The head-and-shoulders crop of scikit-image's astronaut photo, RGB uint8."""
    from skimage import data

    x0, y0, x1, y1 = ASTRONAUT_HEAD
    return np.ascontiguousarray(data.astronaut()[y0:y1, x0:x1])


def load_photo(path: Path) -> np.ndarray:
    """Read a face photo as RGB uint8 (grey photos are expanded to three channels)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth, textured, non-face background (a wall with soft light), RGB uint8."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(60, 170, size=3).astype(np.float32)
    grad = (xx / width - 0.5) * rng.uniform(-60, 60) + (yy / height - 0.5) * rng.uniform(-60, 60)
    noise = cv2.resize(rng.normal(0, 18, size=(height // 16 + 1, width // 16 + 1)).astype(np.float32),
                       (width, height), interpolation=cv2.INTER_CUBIC)
    img = base[None, None, :] + (grad + noise)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    fourcc = {".avi": "MJPG", ".webm": "VP90", ".mkv": "VP90"}.get(path.suffix.lower(), "mp4v")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path.suffix} video here")
    return writer


def make_face_clip(
    photo: np.ndarray,
    path: Path,
    seconds: float = 4.0,
    fps: float = 30.0,
    size: tuple[int, int] = (640, 480),
    face_height: float = 0.6,
    seed: int = 0,
) -> ClipTruth:
    """Write a clip of ``photo`` drifting across a ``size`` frame; return where it was drawn.

    ``face_height`` is the photo's height as a share of the frame height at zoom 1.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(seed)
    background = _background(width, height, rng)
    ph, pw = photo.shape[:2]
    base_scale = face_height * height / ph
    n = max(1, int(round(seconds * fps)))
    phase = rng.uniform(0, 2 * math.pi)
    pan = rng.uniform(0.08, 0.15) * width
    mask_src = np.full((ph, pw), 255, np.uint8)
    transforms = np.zeros((n, 2, 3))
    writer = _writer(path, fps, width, height)
    try:
        for i in range(n):
            t = i / max(n - 1, 1)
            scale = base_scale * (1.0 + 0.12 * t)  # slow zoom in
            angle = 6.0 * math.sin(2 * math.pi * t + phase)  # degrees, gentle head tilt
            cx = width / 2 + pan * math.sin(2 * math.pi * t + phase)
            cy = height / 2 + 0.04 * height * math.cos(2 * math.pi * t)
            m = cv2.getRotationMatrix2D((pw / 2, ph / 2), angle, scale)
            m[0, 2] += cx - pw / 2
            m[1, 2] += cy - ph / 2
            transforms[i] = m
            warped = cv2.warpAffine(photo, m, (width, height), flags=cv2.INTER_LINEAR)
            mask = cv2.warpAffine(mask_src, m, (width, height), flags=cv2.INTER_LINEAR)
            alpha = (mask.astype(np.float32) / 255.0)[..., None]
            frame = warped * alpha + background * (1 - alpha)
            light = 0.85 + 0.25 * t  # lighting drift
            frame = np.clip(frame * light, 0, 255).astype(np.uint8)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return ClipTruth(path=path, fps=fps, n_frames=n, size=size, transforms=transforms)


def make_faceless_clip(path: Path, seconds: float = 3.0, fps: float = 30.0,
                       size: tuple[int, int] = (640, 480), seed: int = 0) -> Path:
    """A clip with texture and motion but no face: a coloured box sliding over a wall."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(seed)
    background = _background(width, height, rng)
    n = max(1, int(round(seconds * fps)))
    writer = _writer(path, fps, width, height)
    try:
        for i in range(n):
            frame = background.copy()
            x = int((width - 120) * i / max(n - 1, 1))
            cv2.rectangle(frame, (x, height // 3), (x + 120, height // 3 + 120), (200, 60, 40), -1)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def make_corrupt_file(path: Path, seed: int = 0) -> Path:
    """Random bytes with a video extension: what a broken download looks like."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path
