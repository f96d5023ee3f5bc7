"""``manifest.csv``: one row per stack, the index that training iterates."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from stacks.atomic import atomic_write_text

MANIFEST_NAME = "manifest.csv"


@dataclass(frozen=True)
class ManifestRow:
    stack: str  # path of the TIFF relative to the stack folder
    label: str
    split: str
    source: str  # source file relative to the --source folder
    video_id: str
    chunk: int
    channels: int
    frames: int  # real frames of the source in this sequence (the rest was padded)
    face_ratio: float  # share of sampled frames where the face was detected
    fingerprint: str
    # Median margin the crops really have around the face (``stackmaker.Crops.margins``); None where no
    # face was detected, or in manifests written before it was recorded.
    margin: float | None = None
    # The annotators' votes per class where the dataset has them (FER+), ``neutral:6;sad:4``: the soft
    # targets of ``train --targets soft``; "" otherwise, and in manifests written before it was recorded.
    votes: str = ""
    root: str = ""  # stack folder, filled in when reading; not written

    @property
    def path(self) -> Path:
        return Path(self.root) / self.stack


_COLUMNS = [f.name for f in fields(ManifestRow) if f.name != "root"]


def format_votes(votes: Mapping[str, int]) -> str:
    """``neutral:6;sad:4``: the ``votes`` cell (no commas, so the CSV needs no quoting)."""
    return ";".join(f"{cls}:{n}" for cls, n in sorted(votes.items()) if n > 0)


def parse_votes(text: str) -> dict[str, int]:
    """The inverse of ``format_votes``; ``{}`` for an empty cell."""
    result = {}
    for item in filter(None, (part.strip() for part in (text or "").split(";"))):
        cls, _, count = item.rpartition(":")
        if not cls:
            raise ValueError(f"a votes cell item must be class:count, got {item!r}")
        result[cls] = int(count)
    return result
_TYPES = {"chunk": int, "channels": int, "frames": int, "face_ratio": float}


def render_manifest(rows: list[ManifestRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r.split, r.label, r.stack)):
        data = asdict(row)
        data.pop("root")
        data["face_ratio"] = f"{row.face_ratio:.4f}"
        data["margin"] = "" if row.margin is None else f"{row.margin:.4f}"
        writer.writerow(data)
    return buf.getvalue()


def write_manifest(folder: Path, rows: list[ManifestRow]) -> bool:
    """Write the manifest atomically; returns False (and touches nothing) when it is unchanged."""
    path = Path(folder) / MANIFEST_NAME
    text = render_manifest(rows)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(path, text)
    return True


def read_manifest(folder: Path, split: str | None = None, label: str | None = None) -> list[ManifestRow]:
    """Rows of ``folder``'s manifest, optionally only one split and/or label."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {folder}: run `python cli.py prepare` first")
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for raw in csv.DictReader(fh):
            values = {k: _TYPES.get(k, str)(raw[k]) for k in _COLUMNS if k not in ("margin", "votes")}
            values["margin"] = float(raw["margin"]) if raw.get("margin") else None
            values["votes"] = raw.get("votes") or ""
            row = ManifestRow(**values, root=str(folder))
            if (split is None or row.split == split) and (label is None or row.label == label):
                rows.append(row)
    return rows
