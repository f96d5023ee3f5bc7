"""A clip's frame count read straight from its MP4/MOV header, without opening a decoder.

`prepare` needs every clip's frame count before it splits (files too short to give a stack take no
val/test slot). Opening a clip with OpenCV to ask costs ~2.3 ms of CPU, and OpenCV opens one clip at
a time process-wide, so on a short run that probe is a visible share of the wall time. The count is
in the header: the sample count of the first video track's sample-size box (``stsz``), which is
what FFmpeg reports as the stream's frame count. Anything this does not understand (fragmented
files, other containers, damaged headers) gives None, and the caller asks OpenCV instead.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

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


def _video_track_samples(fh: BinaryIO, start: int, end: int) -> int | None:
    """The ``stsz`` sample count under one ``trak``, if its handler is video."""
    handler, samples = None, None

    def walk(lo: int, hi: int) -> None:
        nonlocal handler, samples
        for kind, a, b in _boxes(fh, lo, hi):
            if kind in _CONTAINERS:
                walk(a, b)
            elif kind == b"hdlr" and b - a >= 12 and handler is None:
                # The media handler (under mdia) comes first; a QuickTime file has a second one,
                # the data handler under minf, whose subtype is not the media type.
                fh.seek(a + 8)  # version/flags, pre_defined (the component type in QuickTime)
                handler = fh.read(4)
            elif kind == b"stsz" and b - a >= 12:
                fh.seek(a + 8)  # version/flags, sample_size
                samples = struct.unpack(">I", fh.read(4))[0]

    walk(start, end)
    return samples if handler == b"vide" else None


def mp4_frame_count(path: Path) -> int | None:
    """Frames of the first video track of an MP4/MOV file; None when the header does not say."""
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
                    if track == b"trak" and (samples := _video_track_samples(fh, ta, tb)):
                        return samples
                return None
    except (OSError, struct.error):
        return None
    return None
