"""A stack at the network's input size: the one resize that training's Dataset and serving share."""

from __future__ import annotations

import cv2
import numpy as np


def resize_stack(array: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) -> (C, size, size); INTER_AREA down (as prepare crops), linear up; channel by channel
    (OpenCV's area resize takes at most 4 channels at once)."""
    c, h, w = array.shape
    if h == size and w == size:
        return np.ascontiguousarray(array)
    interp = cv2.INTER_AREA if size < h else cv2.INTER_LINEAR
    return np.stack([cv2.resize(ch, (size, size), interpolation=interp) for ch in array])
