"""The settings of one `cli.py prepare` run: where clips come from, how they split, how they become stacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stacks.settings import StackSettings


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
