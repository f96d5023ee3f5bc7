"""The settings of one `cli.py prepare` run: where clips come from, how they split, how they become stacks.

Every option of `cli.py prepare` is defined here, once (help text included); the CLI, the grid's [prepare]
table and its flags are generated from these fields (``pipeline.options``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.options import option
from stacks.settings import StackSettings

Layout = Literal["auto", "seed", "ravdess", "cremad", "ferplus"]


def csv_list(text: str) -> tuple[str, ...]:
    """``a, b,,c`` -> ('a', 'b', 'c')."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _label_map(text: str) -> dict[str, str]:
    from pipeline.prepare.labelling import parse_label_map

    return parse_label_map(text)


def default_out_dir(interval: int) -> Path:
    return Path("data") / "stacks" / f"interval_{interval}"


# StackSettings is defined with the stack code (stacks/settings.py); what its fields mean as `prepare` options.
STACK_OPTIONS = {
    "interval": {"help": "keep every k-th frame of a sequence"},
    "sequence_length": {"help": "frames per sequence (90 = 3 s at 30 fps)"},
    "min_length": {"help": "a trailing sequence with at least this many frames is kept and padded"},
    "size": {"help": "side of the square face crop in pixels"},
    "margin": {"help": "margin added around the face box, share of its size"},
    "detector": {"help": "MediaPipe face detection (faster, same crop) or Face Mesh landmarks (the seed's)"},
    "on_no_face": {"help": "a sequence with no face at all: skip it, or crop the centre square"},
}


@dataclass(frozen=True)
class SplitSettings:
    """How sources are assigned to train / val / test, always by whole source video."""

    val_ids: tuple[str, ...] = option((), "comma-separated video ids for validation, e.g. 0016,0017 (overrides "
                                      "--val-fraction)", parse=csv_list)
    split_file: Path | None = option(None, "CSV with a path column (relative to --source) and a split or usage "
                                     "column (train/val/test or FER2013's Training/PublicTest/PrivateTest); listed "
                                     "files follow it")
    val_fraction: float = option(0.2, "share of videos per label for validation")
    test_fraction: float = option(0.0, "share of videos per label for test")
    seed: int = option(0, "seed of the split shuffle")
    by: Literal["source", "actor"] = option("source", "actor: all clips of one person in one split (needs RAVDESS / "
                                            "CREMA-D names)", flag="--split-by")

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

    source: Path = option(help="folder of clips or images", cli_default=Path("data/clips"))
    out: Path = option(help="output folder (default: data/stacks/interval_<k>)", cli_default=None,
                       derive=lambda v: default_out_dir(v["interval"]))
    stack: StackSettings = option(default_factory=StackSettings, fields=STACK_OPTIONS)
    labels: tuple[str, ...] = option((), "comma-separated allowed labels; others are reported as unknown",
                                     parse=csv_list)
    layout: Layout = option("auto", "how file names give labels (auto: RAVDESS / CREMA-D names and FER+ "
                            "<split>/label.csv files are recognised, else the seed's)")
    label_map: dict[str, str] = option(default_factory=dict, help="dataset labels onto classes: FROM=TO,... (TO "
                                       "'drop' drops them) or a CSV with from,to", parse=_label_map)
    corrections: Path | None = option(None, "label_correction.csv (file,label or drop) (default: the one in "
                                      "--source, if any)")
    split: SplitSettings = field(default_factory=SplitSettings)
    workers: int = option(1, "clips processed in parallel (threads)", cli_default=lambda: os.cpu_count() or 1)
    force: bool = option(False, "rebuild every stack, even those already done", switch=True)
    progress: bool = option(True, "no progress bar", flag="--no-progress")

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("--workers must be >= 1")
