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
class SplitSettings:
    """How sources are assigned to train / val / test, always by whole source video."""

    val_ids: tuple[str, ...] = ()
    split_file: Path | None = None  # CSV naming each file's split (e.g. FER2013's index.csv)
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    seed: int = 0
    by: Literal["source", "actor"] = "source"  # actor: every clip of one person in one split

    def __post_init__(self) -> None:
        if self.by not in ("source", "actor"):
            raise ValueError(f"--split-by must be 'source' or 'actor' (got {self.by!r})")
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
    layout: str = "auto"  # labelling.LAYOUTS
    label_map: dict[str, str] = field(default_factory=dict)  # dataset label -> class (or "drop")
    corrections: Path | None = None  # label_correction.csv (default: the one in the source folder, if any)
    workers: int = 1
    force: bool = False
    progress: bool = True


def default_out_dir(interval: int) -> Path:
    return Path("data") / "stacks" / f"interval_{interval}"


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


@dataclass(frozen=True)
class AugmentSettings:
    """Training augmentation, drawn fresh every epoch, one transform per stack for all its channels.

    Probabilities are per stack; ranges are symmetric around "no change".
    """

    enabled: bool = True
    flip: float = 0.5  # probability of a horizontal flip
    rotate: float = 10.0  # degrees
    translate: float = 0.08  # share of the side
    scale: float = 0.1  # 1 +/- scale
    brightness: float = 0.2  # +/- added to [0, 1] pixels
    contrast: float = 0.2  # 1 +/- contrast
    blur: float = 0.15  # probability of a Gaussian blur
    erase: float = 0.25  # probability of erasing one rectangle (2-20% of the area)

    def __post_init__(self) -> None:
        problems = [f"--{name} must be between 0 and 1 (got {value})"
                    for name, value in (("flip", self.flip), ("blur", self.blur), ("erase", self.erase),
                                        ("brightness", self.brightness), ("contrast", self.contrast),
                                        ("translate", self.translate))
                    if not 0.0 <= value <= 1.0]
        if not 0.0 <= self.scale < 1.0:
            problems.append(f"--scale must be in [0, 1): the zoom is 1 +/- scale (got {self.scale})")
        if not 0.0 <= self.rotate <= 180.0:
            problems.append(f"--rotate must be between 0 and 180 degrees (got {self.rotate})")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)


Optimizer = Literal["adamw", "adam", "sgd"]
Schedule = Literal["exponential", "cosine", "constant"]
Balance = Literal["none", "weights", "sqrt", "sampler"]
Monitor = Literal["accuracy", "uar", "macro_f1", "loss"]
Targets = Literal["majority", "soft"]


@dataclass(frozen=True)
class TrainConfig:
    """One `cli.py train` run (saved into its checkpoints, so a run can be reproduced from them)."""

    data: Path
    name: str
    runs_dir: Path = Path("runs")
    backbone: str = "efficientnetv2_s"
    input: InputSettings = field(default_factory=InputSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    optimizer: Optimizer = "adamw"
    momentum: float = 0.9
    schedule: Schedule = "cosine"
    gamma: float = 0.985  # exponential: lr multiplied by this every epoch (the seed's value)
    warmup_epochs: float = 1.0
    clip_grad: float = 5.0  # max gradient norm; 0 turns clipping off
    label_smoothing: float = 0.0
    # majority: each stack's label; soft: the annotators' vote distribution in the manifest (FER+), as the FER+
    # paper's cross-entropy scheme (pipeline/soft_targets.py). Validation is scored on the labels either way.
    targets: Targets = "majority"
    balance: Balance = "none"
    monitor: Monitor = "accuracy"
    patience: int = 10  # epochs without improvement of --monitor before stopping; 0 = never stop early
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA and on CPUs with native bf16
    compile: bool = False
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    pretrained: bool = False
    weights: Path | None = None
    init: Path | None = None
    head_hidden: int = 512
    head_dropout: float = 0.6
    head_dropout_hidden: float = 0.5
    drop_path: float = 0.0
    cache: Literal["memory", "disk"] = "memory"
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    progress: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"--epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 2:
            problems.append(f"--batch-size must be >= 2: BatchNorm needs 2+ samples (got {self.batch_size})")
        for name, value, low, high in (("weight-decay", self.weight_decay, 0.0, 1.0),
                                       ("momentum", self.momentum, 0.0, 0.999),
                                       ("drop-path", self.drop_path, 0.0, 0.999)):
            if not low <= value <= high:
                problems.append(f"--{name} must be between {low} and {high} (got {value})")
        for name, value in (("warmup-epochs", self.warmup_epochs), ("clip-grad", self.clip_grad),
                            ("threads", self.threads)):
            if value < 0:
                problems.append(f"--{name} must be >= 0 (got {value})")
        if self.lr <= 0:
            problems.append(f"--lr must be > 0 (got {self.lr})")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(f"--label-smoothing must be in [0, 1) (got {self.label_smoothing})")
        if self.targets not in ("majority", "soft"):
            problems.append(f"--targets must be 'majority' or 'soft' (got {self.targets!r})")
        if not 0.0 < self.gamma <= 1.0:
            problems.append(f"--gamma must be in (0, 1] (got {self.gamma})")
        if self.patience < 0:
            problems.append(f"--patience must be >= 0 (got {self.patience})")
        if sum(x is not None and x is not False for x in (self.weights, self.init)) + self.pretrained > 1:
            problems.append("choose one of --pretrained, --weights and --init")
        if self.resume and self.overwrite:
            problems.append("--resume and --overwrite contradict each other")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.name

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("data", "runs_dir", "weights", "init"):
            data[key] = None if data[key] is None else str(data[key])
        return data
