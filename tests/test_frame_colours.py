"""Decoded frames become BGR through the exact BT.601 conversion, in every format a clip may carry."""

from __future__ import annotations

import av
import numpy as np

from stacks.video import frame_bgr
from tests.fixtures.clips import astronaut_head


def _bt601_limited(frame: av.VideoFrame) -> np.ndarray:
    """The textbook float conversion of a limited-range 4:2:0 frame (chroma shared by each 2x2 block)."""
    yuv = frame.to_ndarray(format="yuv420p").astype(np.float64)
    h, w = frame.height, frame.width
    y = yuv[:h]
    u = yuv[h:h + h // 4].reshape(h // 2, w // 2).repeat(2, 0).repeat(2, 1)
    v = yuv[h + h // 4:].reshape(h // 2, w // 2).repeat(2, 0).repeat(2, 1)
    r = 1.164 * (y - 16) + 1.596 * (v - 128)
    g = 1.164 * (y - 16) - 0.392 * (u - 128) - 0.813 * (v - 128)
    b = 1.164 * (y - 16) + 2.017 * (u - 128)
    return np.clip(np.stack([b, g, r], axis=-1), 0, 255)


def _frame(fmt: str) -> av.VideoFrame:
    rgb = np.ascontiguousarray(astronaut_head()[:240, :320])
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt)


def test_phone_format_frames_convert_as_bt601_says_without_swscales_dark_bias() -> None:
    frame = _frame("yuv420p")
    got = frame_bgr(frame).astype(np.float64)
    truth = _bt601_limited(frame)
    assert np.abs(got - truth).mean() < 0.5 and abs((got - truth).mean()) < 0.1
    # PyAV's own conversion (swscale), what frames were before (PyAV 18: about 1.2 levels darker than the
    # formula, which the first assertion refuses): the same matrix, rounding apart
    swscale = frame.to_ndarray(format="bgr24").astype(np.float64)
    assert np.abs(got - swscale).max() <= 3


def test_full_range_frames_keep_pyavs_conversion() -> None:
    frame = _frame("yuvj420p")  # full range: the limited-range formula would flatten its contrast
    assert np.array_equal(frame_bgr(frame), frame.to_ndarray(format="bgr24"))
