"""One stack = one uncompressed uint8 TIFF of shape (channels, size, size) + JSON metadata.

Uncompressed and contiguous so training can memory-map it instead of decoding it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from stacks.atomic import atomic_write


@dataclass(frozen=True)
class Stack:
    array: np.ndarray  # (C, H, W) uint8
    meta: dict

    @property
    def channels(self) -> int:
        return int(self.array.shape[0])


def write_stack(path: Path, array: np.ndarray, meta: dict) -> None:
    """Atomically write ``array`` (C, H, W) uint8 with ``meta`` (JSON-serialisable)."""
    if array.ndim != 3 or array.dtype != np.uint8:
        raise ValueError(f"a stack is (channels, height, width) uint8, got {array.shape} {array.dtype}")
    description = json.dumps({"stack": meta}, sort_keys=True)
    atomic_write(
        Path(path),
        lambda tmp: tifffile.imwrite(
            tmp, array, photometric="minisblack", metadata=None, description=description,
            contiguous=True,
        ),
    )


def read_stack(path: Path, mmap: bool = False) -> Stack:
    """Read a stack back: the array (memory-mapped if asked) and its metadata."""
    path = Path(path)
    with tifffile.TiffFile(path) as tif:
        description = tif.pages[0].description
        meta = json.loads(description).get("stack", {}) if description.startswith("{") else {}
        if mmap:
            array = tifffile.memmap(path, mode="r")
        else:
            array = tif.asarray()
    if array.ndim == 2:
        array = array[None]
    return Stack(array=array, meta=meta)
