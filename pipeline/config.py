"""The settings of every stage, in one typed place.

``StackSettings`` is the contract between ``prepare``, ``train`` and ``predict``: it says how a clip
becomes a stack. It is written into every stack and (later) every checkpoint, so serving reads it
back instead of re-typing it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

Detector = Literal["detection", "mesh"]
OnNoFace = Literal["skip", "center"]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Bump when the crop code changes in a way that changes the pixels of a stack: it is part of the
# fingerprint, so stale stacks get rebuilt instead of silently mixed with new ones.
CROP_VERSION = 2


@dataclass(frozen=True)
class StackSettings:
    """How one clip becomes one or more (channels, size, size) uint8 stacks."""

    sequence_length: int = 90
    min_length: int = 75
    interval: int = 5
    size: int = 224
    margin: float = 0.1
    detector: Detector = "detection"
    on_no_face: OnNoFace = "skip"

    def __post_init__(self) -> None:
        problems = []
        if self.sequence_length < 1:
            problems.append(f"--sequence-length must be >= 1 (got {self.sequence_length})")
        if not 1 <= self.min_length <= self.sequence_length:
            problems.append(
                f"--min-length must be between 1 and --sequence-length {self.sequence_length} "
                f"(got {self.min_length})"
            )
        if not 1 <= self.interval <= self.sequence_length:
            problems.append(
                f"--interval must be between 1 and --sequence-length {self.sequence_length} "
                f"(got {self.interval})"
            )
        if self.size < 8:
            problems.append(f"--size must be >= 8 pixels (got {self.size})")
        if not 0.0 <= self.margin <= 1.0:
            problems.append(f"--margin must be between 0 and 1 (got {self.margin})")
        if self.detector not in ("detection", "mesh"):
            problems.append(f"--detector must be 'detection' or 'mesh' (got {self.detector!r})")
        if self.on_no_face not in ("skip", "center"):
            problems.append(f"--on-no-face must be 'skip' or 'center' (got {self.on_no_face!r})")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def channels(self) -> int:
        """Channels of a video stack: one per sampled frame of a sequence (90 / 5 -> 18)."""
        return len(self.sampled_offsets())

    def sampled_offsets(self) -> list[int]:
        """Frame offsets inside a sequence that are sampled: 0, k, 2k, ..."""
        return list(range(0, self.sequence_length, self.interval))

    def fingerprint(self) -> str:
        """Short hash of everything that changes a stack's pixels; decides what a rerun may skip."""
        payload = json.dumps({**asdict(self), "crop_version": CROP_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StackSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class SplitSettings:
    """How sources are assigned to train / val / test, always by whole source video."""

    val_ids: tuple[str, ...] = ()
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0 or not 0.0 <= self.test_fraction < 1.0:
            raise ValueError("--val-fraction and --test-fraction must be in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("--val-fraction + --test-fraction must leave something to train on (< 1)")


@dataclass(frozen=True)
class PrepareConfig:
    """One `cli.py prepare` run."""

    source: Path
    out: Path
    stack: StackSettings = field(default_factory=StackSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    labels: tuple[str, ...] = ()
    workers: int = 1
    force: bool = False
    progress: bool = True


def default_out_dir(interval: int) -> Path:
    return Path("data") / "stacks" / f"interval_{interval}"
