"""A clip's frame count and duration read straight from its MP4/MOV header, without opening a decoder.

`prepare` needs every clip's length before it splits (files too short to give a stack take no val/test
slot). Opening a clip to ask costs ~2 ms (PyAV; OpenCV's capture took ~2.3 ms of CPU and opened one clip
at a time process-wide), so on a short run that probe is a visible share of the wall time; this read
takes 0.03 ms. The count is the sample count of the first video track's sample-size box (``stsz``),
which is what FFmpeg reports as the stream's frame count, and the duration is its media header's
(``mdhd``). Anything this does not understand (fragmented files, other containers, damaged headers)
gives None, and the caller opens the container instead.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, NamedTuple

SUFFIXES = frozenset({".mp4", ".mov", ".m4v"})
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}  # boxes on the path to stsz
_MAX_HEADER = 64 << 20  # a moov larger than this is not a phone clip's; let OpenCV deal with it


def _boxes(fh: BinaryIO, start: int, end: int):  # -> Iterator[tuple[bytes, int, int]]
    """(type, payload start, payload end) of each box between ``start`` and ``end``."""
    pos = start
    while pos + 8 <= end:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head)
        payload = pos + 8
        if size == 1:  # 64-bit size follows the type
            large = fh.read(8)
            if len(large) < 8:
                return
            size = struct.unpack(">Q", large)[0]
            payload += 8
        elif size == 0:  # the box runs to the end of its parent
            size = end - pos
        if size < payload - pos or pos + size > end:
            return  # damaged: stop rather than guess
        yield kind, payload, pos + size
        pos += size


class Track(NamedTuple):
    """The first video track's sample count and duration (0.0 when the header gives none)."""

    frames: int
    seconds: float


def _media_seconds(fh: BinaryIO, start: int, end: int) -> float:
    """The track's duration from its media header (``mdhd``): duration / timescale."""
    fh.seek(start)
    version = fh.read(1)
    if not version:
        return 0.0
    if version[0] == 1 and end - start >= 32:
        fh.seek(start + 4 + 16)  # version/flags, creation and modification times (64-bit)
        timescale, duration = struct.unpack(">IQ", fh.read(12))
    elif end - start >= 20:
        fh.seek(start + 4 + 8)
        timescale, duration = struct.unpack(">II", fh.read(8))
    else:
        return 0.0
    return duration / timescale if timescale and duration not in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF) else 0.0


def _video_track(fh: BinaryIO, start: int, end: int) -> Track | None:
    """The ``stsz`` sample count and ``mdhd`` duration under one ``trak``, if its handler is video."""
    handler, samples, seconds = None, None, 0.0

    def walk(lo: int, hi: int) -> None:
        nonlocal handler, samples, seconds
        for kind, a, b in _boxes(fh, lo, hi):
            if kind in _CONTAINERS:
                walk(a, b)
            elif kind == b"mdhd":
                seconds = _media_seconds(fh, a, b)
            elif kind == b"hdlr" and b - a >= 12 and handler is None:
                # The media handler (under mdia) comes first; a QuickTime file has a second one,
                # the data handler under minf, whose subtype is not the media type.
                fh.seek(a + 8)  # version/flags, pre_defined (the component type in QuickTime)
                handler = fh.read(4)
            elif kind == b"stsz" and b - a >= 12:
                fh.seek(a + 8)  # version/flags, sample_size
                samples = struct.unpack(">I", fh.read(4))[0]

    walk(start, end)
    return Track(samples, seconds) if handler == b"vide" and samples else None


def mp4_frame_count(path: Path) -> int | None:
    """Frames of the first video track of an MP4/MOV file; None when the header does not say."""
    track = mp4_track(path)
    return track.frames if track is not None else None


def mp4_track(path: Path) -> Track | None:
    """Frames and duration of the first video track of an MP4/MOV file; None when the header does not say."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        return None
    try:
        with open(path, "rb") as fh:
            size = path.stat().st_size
            for kind, a, b in _boxes(fh, 0, size):
                if kind != b"moov":
                    continue
                if b - a > _MAX_HEADER:
                    return None
                for track, ta, tb in _boxes(fh, a, b):
                    if track == b"trak" and (found := _video_track(fh, ta, tb)):
                        return found
                return None
    except (OSError, struct.error):
        return None
    return None
