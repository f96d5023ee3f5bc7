"""Where a file's label comes from, and how it is corrected or mapped before it becomes a class.

Dataset layouts: the seed's ``<Label>_<id>`` names and ``<label>/`` folders; RAVDESS names (seven
two-digit fields, the third is the emotion, the last the actor); CREMA-D names
(``ActorID_Sentence_Emotion_Level``). A file named like RAVDESS or CREMA-D is read that way even
inside folders (RAVDESS ships as ``Actor_01/`` folders, which are not labels).

Then, in this order: ``label_correction.csv`` (the seed kept one: a file's right label, or ``drop``),
then the label map (a dataset's labels onto the project's classes, e.g. surprised -> shock, or drop),
then the closed set of ``--labels``.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.prepare.pair_file import read_pairs
from pipeline.prepare.settings import Layout

LAYOUTS: tuple[str, ...] = typing.get_args(Layout)
DROP = "drop"
CORRECTIONS_NAME = "label_correction.csv"

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                    "07": "disgust", "08": "surprised"}
CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_RAVDESS_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_CREMAD_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2}|X{1,2})$")


class LabelFileError(ValueError):
    """A corrections file or label map that cannot be used as given."""


@dataclass(frozen=True)
class NameLabel:
    label: str  # "" for a dataset name whose emotion code is not one of the dataset's
    group: str | None = None  # the person in the clip, where the layout says (for person-disjoint splits)


def dataset_name(stem: str, layout: Layout) -> NameLabel | None:
    """Label and actor from a RAVDESS or CREMA-D file name; None when ``stem`` is not one."""
    if layout in ("auto", "ravdess") and (m := _RAVDESS_RE.match(stem)):
        return NameLabel(RAVDESS_EMOTIONS.get(m[3], ""), f"ravdess_actor_{m[7]}")
    if layout in ("auto", "cremad") and (m := _CREMAD_RE.match(stem)):
        return NameLabel(CREMAD_EMOTIONS.get(m[3], ""), f"cremad_actor_{m[1]}")
    return None


def _normalise(label: str) -> str:
    return label.strip().lower().replace(" ", "_")


def read_corrections(path: Path) -> dict[str, str]:
    """``{file: new label or 'drop'}``; a file is its path under the source folder or its bare name."""
    pairs = read_pairs(path, ("file", "path", "name"), ("label", "new_label", "correct_label", "corrected"),
                       LabelFileError, "label corrections")
    return {k: _normalise(v) for _, k, v in pairs}


def parse_label_map(text: str) -> dict[str, str]:
    """``surprised=shock,calm=drop`` or a CSV file with ``from`` and ``to`` columns."""
    if not text:
        return {}
    if Path(text).is_file():
        pairs = {k: v for _, k, v in read_pairs(Path(text), ("from", "label", "source"), ("to", "class", "target"),
                                                LabelFileError, "label map")}
    else:
        pairs = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            if "=" not in item:
                raise LabelFileError(f"--label-map item {item!r} is not FROM=TO (e.g. surprised=shock,calm=drop)")
            left, right = item.split("=", 1)
            pairs[left] = right
    return {_normalise(k): _normalise(v) for k, v in pairs.items()}


@dataclass
class Relabeller:
    """Applies the corrections, then the label map; counts what it did for the prepare report."""

    corrections: dict[str, str] = field(default_factory=dict)
    label_map: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"corrected": 0, "mapped": 0, "dropped": 0})
    used: set[str] = field(default_factory=set)
    source_file: str | None = None  # where the corrections came from, for the report
    seen: set[str] = field(default_factory=set)  # the dataset's labels, before the map
    final: set[str] = field(default_factory=set)  # the labels files end up with

    def report(self) -> dict:
        return {**self.counts, "corrections_file": self.source_file, "label_map": dict(self.label_map),
                "unused_corrections": self.unused_corrections(),
                "unused_label_map": sorted(set(self.label_map) - self.seen),
                "labels_found": sorted(self.seen), "labels_kept": sorted(self.final)}

    def apply(self, rel: str, label: str) -> tuple[str | None, str]:
        """(final label or None when dropped, why it was dropped)."""
        name = rel.rsplit("/", 1)[-1]
        key = rel if rel in self.corrections else name if name in self.corrections else None
        if key is not None:
            self.used.add(key)
            if self.corrections[key] == DROP:
                self.counts["dropped"] += 1
                return None, f"dropped by {CORRECTIONS_NAME}"
            if self.corrections[key] != label:
                self.counts["corrected"] += 1
                label = self.corrections[key]
        self.seen.add(label)
        if label in self.label_map:
            if self.label_map[label] == DROP:
                self.counts["dropped"] += 1
                return None, f"label {label!r} dropped by the label map"
            self.counts["mapped"] += 1
            label = self.label_map[label]
        self.final.add(label)
        return label, ""

    def unused_corrections(self) -> list[str]:
        """Corrections naming no file that was found: a typo the user should hear about."""
        return sorted(set(self.corrections) - self.used)
