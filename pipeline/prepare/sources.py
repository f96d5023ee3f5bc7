"""Find the clips and images under a source folder and say what each one is.

Layouts accepted (the seed's and the usual dataset ones):
  DIR/Happy_0001.mp4                       label and id from the name
  DIR/happy/any_name.mp4                   label from the folder
  DIR/happy/img.png                        still image -> 1-channel stack
  DIR/train/happy/img.png, DIR/test/...    a dataset that already has its splits keeps them
  DIR/Actor_01/01-01-03-01-01-01-01.mp4    RAVDESS names; DIR/1001_DFA_ANG_XX.flv: CREMA-D names
                                           (``labelling``: label and actor from the name)
  DIR/train/label.csv + DIR/train/*.png    FER+ (``ferplus``: majority label and votes from label.csv)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.prepare.labelling import Layout, Relabeller, dataset_name
from stacks.settings import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

Kind = Literal["video", "image"]
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}
_NAME_RE = re.compile(r"^(?P<label>[A-Za-z][A-Za-z\- ]*?)[_\-](?P<id>[^_\-].*)$")


@dataclass(frozen=True)
class Source:
    """One input file and what we know of it before decoding."""

    path: Path
    rel: str  # path relative to the source folder, with '/' separators: the stable key
    label: str
    video_id: str
    kind: Kind
    split: str | None = None  # fixed by a train/ val/ test/ folder, else assigned later
    group: str | None = None  # the person in it, where the layout says (RAVDESS, CREMA-D actors)
    votes: str = ""  # annotators' votes per class, where the layout has them (FER+): ferplus.format_votes


@dataclass(frozen=True)
class Rejected:
    """A file that cannot become a stack, with the reason (goes to prepare_report.json)."""

    rel: str
    reason: str
    category: str = "not usable"  # how the prepare report counts it (FER+: "majority unknown", ...)


def checked_label(rel: str, label: str, relabeller: Relabeller,
                  allowed: set[str]) -> tuple[str | None, Rejected | None]:
    """The label after corrections and the label map, or why the file is set aside."""
    final, why = relabeller.apply(rel, label)
    if final is None:
        return None, Rejected(rel, why)
    if allowed and final not in allowed:
        return None, Rejected(rel, f"unknown label {final!r} (allowed: {', '.join(sorted(allowed))})")
    return final, None


def normalise_label(label: str) -> str:
    return label.strip().lower().replace(" ", "_")


def _kind(path: Path) -> Kind | None:
    ext = path.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return None


def discover(root: Path, labels: tuple[str, ...] = (), layout: Layout = "auto",
             relabeller: Relabeller | None = None) -> tuple[list[Source], list[Rejected]]:
    """List every usable file under ``root`` (sorted, so runs are reproducible).

    ``labels``, when given, is the closed set of classes: anything else is rejected as an unknown
    label instead of silently becoming a new class. ``relabeller`` applies label corrections and the
    label map first.
    """
    from pipeline.prepare.ferplus import discover_ferplus, is_ferplus

    if layout == "ferplus" or (layout == "auto" and is_ferplus(root)):
        return discover_ferplus(root, labels, relabeller)
    allowed = {normalise_label(x) for x in labels}
    relabeller = relabeller or Relabeller()
    sources: list[Source] = []
    rejected: list[Rejected] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel_parts = path.relative_to(root).parts
        rel = "/".join(rel_parts)
        if any(part.startswith(".") for part in rel_parts):
            continue  # hidden files and folders (.DS_Store, .cache) are not data
        kind = _kind(path)
        if kind is None:
            if path.suffix.lower() not in (".txt", ".md", ".csv", ".json"):
                rejected.append(Rejected(rel, f"not a video or image ({path.suffix or 'no extension'})"))
            continue
        folders = list(rel_parts[:-1])
        split = None
        if folders and folders[0].lower() in SPLIT_FOLDERS:
            split = SPLIT_FOLDERS[folders.pop(0).lower()]
        group = None
        if (named := dataset_name(path.stem, layout)) is not None:
            if not named.label:
                rejected.append(Rejected(rel, "a RAVDESS / CREMA-D name with an unknown emotion code"))
                continue
            label, video_id, group = named.label, path.stem, named.group
        elif layout in ("ravdess", "cremad"):
            rejected.append(Rejected(rel, f"not a {layout} file name"))
            continue
        elif folders:
            label = folders[-1]
            video_id = path.stem
        else:
            match = _NAME_RE.match(path.stem)
            if not match:
                rejected.append(Rejected(rel, "no label: name it <Label>_<id>.<ext> or put it in a <label>/ folder"))
                continue
            label, video_id = match["label"], match["id"]
        final, refusal = checked_label(rel, normalise_label(label), relabeller, allowed)
        if refusal is not None:
            rejected.append(refusal)
            continue
        sources.append(Source(path=path, rel=rel, label=final, video_id=video_id, kind=kind, split=split,
                              group=group))
    return sources, rejected
