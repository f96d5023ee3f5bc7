"""A learnable stack dataset made from nothing: for tests, benchmarks and trying `train` quickly.

Class k is a grating at orientation k * 180 / K degrees whose phase drifts across the channels
(like a face moving through a clip), with random phase, frequency, contrast and noise per stack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import StackSettings
from stacks.io import write_stack
from stacks.manifest import ManifestRow, write_manifest


def grating_stack(label: int, num_classes: int, channels: int, size: int, rng: np.random.Generator) -> np.ndarray:
    angle = np.pi * label / num_classes + rng.normal(0, 0.05)
    freq = rng.uniform(2.5, 4.0) * 2 * np.pi / size
    phase, drift = rng.uniform(0, 2 * np.pi), rng.uniform(-0.4, 0.4)
    contrast, level = rng.uniform(40, 90), rng.uniform(100, 150)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    frames = [level + contrast * np.sin(freq * along + phase + drift * c) + rng.normal(0, 12, (size, size))
              for c in range(channels)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def make_stack_set(out: Path, classes: tuple[str, ...] = ("anger", "happy", "sad"),
                   counts: dict[str, int] | None = None, channels: int = 4, size: int = 32, seed: int = 0,
                   settings: StackSettings | None = None) -> list[ManifestRow]:
    """Write ``counts[split]`` stacks per class into ``out`` with a manifest, as prepare would."""
    counts = counts or {"train": 24, "val": 8, "test": 8}
    settings = settings or StackSettings(size=size)
    fingerprint = settings.fingerprint()
    rng = np.random.default_rng(seed)
    rows: list[ManifestRow] = []
    for split, per_class in counts.items():
        for k, label in enumerate(classes):
            for i in range(per_class):
                video_id = f"{split}{i:04d}"
                rel = f"{split}/{label}/{video_id}_000.tiff"
                meta = {"source": f"{label}/{video_id}.mp4", "label": label, "split": split, "chunk": 0,
                        "settings": settings.to_dict(), "fingerprint": fingerprint}
                write_stack(out / rel, grating_stack(k, len(classes), channels, size, rng), meta)
                rows.append(ManifestRow(stack=rel, label=label, split=split, source=meta["source"],
                                        video_id=video_id, chunk=0, channels=channels, frames=90, face_ratio=1.0,
                                        fingerprint=fingerprint, root=str(out)))
    write_manifest(out, rows)
    return rows
