"""The FER+ layout: FER2013 faces with ten annotators' votes per image (Barsoum et al., 2016).

    DIR/train/label.csv, DIR/train/fer0000000.png, ...   (also valid/, test/; or FER2013Train/ ...)

``label.csv`` has no header: image name, face box, then ten vote counts in the order of ``VOTE_ORDER``.
Each image becomes one source whose label is the majority (the class with the most votes; a tie goes
to the class first in FER+'s order) and which carries its votes, so that ``train --targets soft`` can
learn the annotators' distribution instead of one label.

Dropped and reported (``prepare_report.json``): images whose majority is ``unknown`` or ``NF`` (not a
face), as the FER+ paper does, and images whose majority is ``contempt``. Contempt is mapped out, not
kept as an 8th class: FER2013, the shipped model, the `fer` package and face-api.js have the seven
FER2013 classes, so an 8th class could be compared with none of them; and with 168 training images
(0.6%) it would be learnt poorly. Contempt votes are left out of every other image's distribution.

The FER+ names are mapped onto FER2013's (happiness -> happy, sadness -> sad, anger -> angry), the
names of ``../shared/data/fer2013`` and of the shipped model, so a FER2013 model evaluates on FER+
stacks as it is.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from pipeline.prepare.labelling import DROP, Relabeller
from pipeline.prepare.sources import Rejected, Source, checked_label, normalise_label
from stacks.manifest import format_votes, parse_votes

LABEL_FILE = "label.csv"
VOTE_ORDER = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
# FER+ class -> this project's class; None: never a class (the image is dropped when it is the majority).
CLASSES: dict[str, str | None] = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad", "anger": "angry",
    "disgust": "disgust", "fear": "fear", "contempt": None, "unknown": None, "NF": None,
}
# FER+'s folder names (theirs and the short ones) -> our split names.
SPLIT_FOLDERS = {"train": "train", "valid": "val", "test": "test",
                 "FER2013Train": "train", "FER2013Valid": "val", "FER2013Test": "test"}
__all__ = ["discover_ferplus", "format_votes", "is_ferplus", "majority", "parse_votes", "read_label_file"]
DROP_REASONS = {"unknown": "majority unknown", "NF": "majority not a face",
                "contempt": "majority contempt (not a class here)"}


class FerPlusError(ValueError):
    """A FER+ label file that cannot be read as given (one line, with the file and row)."""


def is_ferplus(root: Path) -> bool:
    """True when ``root`` holds at least one FER+ split folder with its ``label.csv``."""
    return any((Path(root) / folder / LABEL_FILE).is_file() for folder in SPLIT_FOLDERS)


def read_label_file(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    """``[(image name, ten vote counts), ...]`` in file order."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for line, cells in enumerate(csv.reader(handle), start=1):
                if not cells or not "".join(cells).strip():
                    continue
                if len(cells) != 2 + len(VOTE_ORDER):
                    raise FerPlusError(f"{path}:{line}: {len(cells)} fields, a FER+ row has 12 (name, box, "
                                       f"{', '.join(VOTE_ORDER)})")
                try:
                    votes = tuple(int(float(v)) for v in cells[2:])
                except ValueError:
                    raise FerPlusError(f"{path}:{line}: vote counts must be numbers ({cells[2:]})") from None
                if min(votes) < 0 or sum(votes) == 0:
                    raise FerPlusError(f"{path}:{line}: vote counts must be >= 0 and not all 0 ({votes})")
                rows.append((cells[0].strip(), votes))
    except OSError as exc:
        raise FerPlusError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return rows


def majority(votes: tuple[int, ...]) -> str:
    """The FER+ class with the most votes; a tie goes to the one first in ``VOTE_ORDER``."""
    return VOTE_ORDER[max(range(len(votes)), key=lambda i: (votes[i], -i))]


def class_votes(votes: tuple[int, ...], label_map: Mapping[str, str], allowed: set[str]) -> dict[str, int]:
    """Votes per project class: FER+ names mapped, then ``--label-map``; dropped and unknown classes left out."""
    result: dict[str, int] = {}
    for name, count in zip(VOTE_ORDER, votes):
        cls = CLASSES[name]
        if cls is None or count == 0:
            continue
        cls = label_map.get(cls, cls)
        if cls == DROP or (allowed and cls not in allowed):
            continue
        result[cls] = result.get(cls, 0) + count
    return result


def discover_ferplus(root: Path, labels: tuple[str, ...] = (),
                     relabeller: Relabeller | None = None) -> tuple[list[Source], list[Rejected]]:
    """Every image listed in a FER+ ``label.csv`` under ``root``, its split fixed by its folder."""
    root = Path(root)
    allowed = {normalise_label(x) for x in labels}
    relabeller = relabeller or Relabeller()
    sources: list[Source] = []
    rejected: list[Rejected] = []
    for folder, split in SPLIT_FOLDERS.items():
        label_file = root / folder / LABEL_FILE
        if not label_file.is_file():
            continue
        for name, votes in read_label_file(label_file):
            rel = f"{folder}/{name}"
            path = root / folder / name
            top = majority(votes)
            if CLASSES[top] is None:
                rejected.append(Rejected(rel, f"FER+ majority is {top} ({votes[VOTE_ORDER.index(top)]} of "
                                              f"{sum(votes)} votes)", DROP_REASONS[top]))
                continue
            if not path.is_file():
                rejected.append(Rejected(rel, f"listed in {folder}/{LABEL_FILE} but missing", "missing"))
                continue
            final, refusal = checked_label(rel, CLASSES[top], relabeller, allowed)
            if refusal is not None:
                rejected.append(refusal)
                continue
            relabeller.seen.update(cls for cls, n in zip(CLASSES.values(), votes) if cls is not None and n)
            counts = class_votes(votes, relabeller.label_map, allowed)
            sources.append(Source(path=path, rel=rel, label=final, video_id=path.stem, kind="image", split=split,
                                  votes=format_votes(counts)))
    return sources, rejected
