"""A torch Dataset over the manifest that keeps every stack as uint8.

The stacks are read once, resized to the training size and held in one (N, C, S, S) uint8 array,
in memory or in a memory-mapped ``.npy`` cache on disk. Batches are converted to float on the
device, so no float32 copy of the dataset ever exists (the seed's preloaded float32 tensors used
4x the memory).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from stacks.atomic import TMP_MARK
from stacks.io import read_stack
from stacks.manifest import ManifestRow
from stacks.resize import resize_stack


class DatasetError(ValueError):
    """Stacks that cannot be trained on together; the message says which and why."""


def cache_key(rows: Sequence[ManifestRow], size: int) -> str:
    """Changes when any stack file changes (a `prepare --force` rewrites them under the same names)."""
    digest = hashlib.sha256(f"{size}".encode())
    for row in rows:
        try:
            stat = row.path.stat()
            version = f"{stat.st_size}|{stat.st_mtime_ns}"
        except OSError:
            version = "missing"
        digest.update(f"{row.stack}|{row.fingerprint}|{row.channels}|{version}\n".encode())
    return digest.hexdigest()[:16]


class StackDataset(Dataset):
    """``dataset[i]`` -> (uint8 tensor (C, S, S), label); ``dataset[[i, j, ...]]`` -> a batch."""

    def __init__(self, rows: Sequence[ManifestRow], classes: Sequence[str], size: int,
                 cache_dir: Path | None = None, progress: bool = False, desc: str = "load stacks") -> None:
        if not rows:
            raise DatasetError("no stacks to load")
        channels = {row.channels for row in rows}
        if len(channels) > 1:
            raise DatasetError(
                f"stacks with different channel counts ({sorted(channels)}) in one dataset: prepare every "
                "clip with the same --interval and --sequence-length (one stack folder per interval)"
            )
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({row.label for row in rows} - set(index))
        if unknown:
            raise DatasetError(f"labels {unknown} are not among the training classes {list(classes)}")
        self.rows = list(rows)
        self.classes = list(classes)
        self.channels = channels.pop()
        self.size = size
        self.labels = np.array([index[row.label] for row in self.rows], dtype=np.int64)
        shape = (len(self.rows), self.channels, size, size)
        if cache_dir is None:
            self.images = np.empty(shape, dtype=np.uint8)
            self._fill(progress, desc)
        else:
            self.images = self._disk_cache(Path(cache_dir), shape, progress, desc)

    def _disk_cache(self, folder: Path, shape: tuple[int, ...], progress: bool, desc: str) -> np.ndarray:
        """Reuse a complete cache of the same stacks and size; build it under a temporary name otherwise."""
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"stacks_{cache_key(self.rows, self.size)}.npy"
        if final.is_file():
            return np.load(final, mmap_mode="r")
        tmp = final.with_name(f"{final.name}{TMP_MARK}{os.getpid()}-{threading.get_ident()}")  # never *.npy
        self.images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        self._fill(progress, desc)
        self.images.flush()
        del self.images
        tmp.replace(final)
        return np.load(final, mmap_mode="r")

    def _fill(self, progress: bool, desc: str) -> None:
        first_shape: list[tuple[int, int]] = []

        def load(i: int) -> None:
            row = self.rows[i]
            try:
                array = read_stack(row.path, mmap=True).array
            except FileNotFoundError:
                raise DatasetError(f"{row.path} is in the manifest but missing: rerun `python cli.py prepare`"
                                   ) from None
            except Exception as exc:
                raise DatasetError(f"{row.path} cannot be read ({exc}): rerun `python cli.py prepare --force`") from exc
            if array.shape[0] != self.channels:
                raise DatasetError(f"{row.path} has {array.shape[0]} channels but the manifest says {row.channels}")
            if not first_shape:
                first_shape.append(array.shape[1:])
            elif array.shape[1:] != first_shape[0]:
                raise DatasetError(
                    f"stacks of different sizes: {row.path} is {array.shape[1]}x{array.shape[2]}, others "
                    f"{first_shape[0][0]}x{first_shape[0][1]}; prepare all with the same --size"
                )
            self.images[i] = resize_stack(np.asarray(array), self.size)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(tqdm(pool.map(load, range(len(self.rows))), total=len(self.rows), desc=desc, unit="stack",
                      disable=not progress, dynamic_ncols=True, leave=False))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One stack, or a batch for a list of indices. A batch comes back in index order (reads from a
        memory-mapped cache stay sequential), the same in memory and on disk, so results do not depend on
        the cache mode."""
        if isinstance(index, (int, np.integer)):
            return torch.from_numpy(np.array(self.images[index])), torch.tensor(self.labels[index])
        idx = self.batch_order(index)
        return torch.from_numpy(np.ascontiguousarray(self.images[idx])), torch.from_numpy(self.labels[idx])

    @staticmethod
    def batch_order(index: Sequence[int]) -> np.ndarray:
        """The order of the stacks a batch ``dataset[index]`` returns, for targets kept beside the dataset."""
        return np.sort(np.asarray(index))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes)
