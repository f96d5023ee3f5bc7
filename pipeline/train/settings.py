"""The settings of one `cli.py train` run (saved into its checkpoints, so a run can be reproduced from them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from stacks.settings import InputSettings


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
