"""The settings that define a stack and the network input made from it: the contract of the one preprocessing path.

``StackSettings`` says how a clip becomes a stack, ``InputSettings`` how a stack becomes the network's input.
Both are written into every stack or checkpoint, so serving reads them back instead of re-typing them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Literal

Detector = Literal["detection", "mesh"]
OnNoFace = Literal["skip", "center"]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".flv")  # .flv: CREMA-D's videos
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# Sequence length, minimum length and interval are counted in frames at this rate: they are times
# (90 -> 3 s), the rate the training clips had. A clip at another or a variable rate is sampled by
# presentation time (``timegrid``), and a checkpoint without seconds is read at this rate.
REFERENCE_FPS = 30.0

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

    @property
    def sequence_seconds(self) -> float:
        return self.sequence_length / REFERENCE_FPS

    @property
    def interval_seconds(self) -> float:
        return self.interval / REFERENCE_FPS

    @property
    def min_seconds(self) -> float:
        return self.min_length / REFERENCE_FPS

    def timing(self) -> dict[str, float]:
        """The lengths as seconds, as a model stores them beside the frame counts."""
        return {"sequence_seconds": round(self.sequence_seconds, 6),
                "interval_seconds": round(self.interval_seconds, 6),
                "min_seconds": round(self.min_seconds, 6), "reference_fps": REFERENCE_FPS}

    def fingerprint(self) -> str:
        """Short hash of everything that changes a stack's pixels; decides what a rerun may skip."""
        payload = json.dumps({**asdict(self), "crop_version": CROP_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, timing: dict | None = None) -> StackSettings:
        """``timing``: the seconds a model stored (``timing()``); they rule over the frame counts. Without
        them (checkpoints from before), the counts are frames at ``REFERENCE_FPS``."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for name, key in (("sequence_length", "sequence_seconds"), ("interval", "interval_seconds"),
                          ("min_length", "min_seconds")):
            if timing and isinstance(timing.get(key), (int, float)):
                values[name] = max(1, int(round(timing[key] * REFERENCE_FPS)))
        return cls(**values)


@dataclass(frozen=True)
class InputSettings:
    """How a stack becomes the network's input tensor; stored in checkpoints, read by predict."""

    image_size: int = 112
    mean: float = 0.5  # grey level, after scaling to [0, 1]
    std: float = 0.5
    # Serving and evaluation only: average each input's class probabilities with its mirror image's
    # (2x the model time). Set on export (`export --mirror`); training never reads it.
    mirror: bool = False

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"--image-size must be >= 16 pixels (got {self.image_size})")
        if self.std <= 0:
            raise ValueError("normalisation std must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)
