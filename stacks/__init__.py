"""Clip -> stack: the one preprocessing path that `prepare`, `train` and `predict` share.

A clip is decoded upright with each frame's time (``video``), the frames shown at the sampled moments are
picked (``timegrid``, ``windows``), faces are found (``faces``) and followed (``tracks``), framed and cropped
grey (``framing``, ``maker``), and stacked into one (channels, size, size) uint8 TIFF (``io``) listed in
``manifest.csv`` (``manifest``), which training reads as a Dataset (``dataset``). ``settings`` holds what
defines a stack and the network input made from it.

    from stacks import read_stack, read_manifest
    for row in read_manifest("data/stacks/interval_5", split="train"):
        stack = read_stack(row.path)        # stack.array: (C, H, W) uint8, stack.meta: dict
"""

import os

# FFmpeg and OpenCV print per-file warnings (e.g. "moov atom not found") that the prepare report already
# records with the file's name; glog and TensorFlow Lite honour the last two (MediaPipe 1.x's start-up lines
# do not: faces.py keeps them off the terminal). Set here, before any module of this package imports cv2.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from stacks.io import Stack, read_stack, write_stack  # noqa: E402
from stacks.manifest import MANIFEST_NAME, ManifestRow, read_manifest, write_manifest  # noqa: E402

__all__ = ["MANIFEST_NAME", "ManifestRow", "Stack", "read_manifest", "read_stack", "write_manifest", "write_stack"]
