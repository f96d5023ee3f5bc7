"""What each source became, kept across runs so a rerun only does what is missing or stale.

An append-only JSON-lines file: one line per finished source, written as soon as it finishes, so
an interrupted run loses at most the clips that were in flight. The last line for a source wins.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stacks.atomic import atomic_write_text
from stacks.manifest import ManifestRow

JOURNAL_NAME = "prepare_state.jsonl"


@dataclass
class SourceRecord:
    rel: str
    size: int
    mtime_ns: int
    fingerprint: str
    split: str
    label: str
    rows: list[ManifestRow] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"chunk", "reason", "detail"}
    frames_decoded: int = 0

    def to_json(self) -> str:
        data = asdict(self)
        for row in data["rows"]:
            row.pop("root", None)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, line: str, root: Path) -> SourceRecord:
        data = json.loads(line)
        data["rows"] = [ManifestRow(**row, root=str(root)) for row in data["rows"]]
        return cls(**data)

    def is_current(self, path: Path, fingerprint: str, split: str, label: str) -> bool:
        """True when the source file, the settings and the split are unchanged and stacks exist."""
        try:
            stat = path.stat()
        except OSError:
            return False
        return (
            (self.size, self.mtime_ns, self.fingerprint, self.split, self.label)
            == (stat.st_size, stat.st_mtime_ns, fingerprint, split, label)
            and all(row.path.is_file() for row in self.rows)
        )


class Journal:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL_NAME
        self.records: dict[str, SourceRecord] = {}
        self._appended = 0

    def load(self) -> Journal:
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = SourceRecord.from_json(line, self.folder)
                except (ValueError, TypeError, KeyError):
                    continue  # a line cut by a kill mid-write: that source is simply redone
                self.records[record.rel] = record
        return self

    def add(self, record: SourceRecord) -> None:
        self.records[record.rel] = record
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(record.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._appended += 1

    def compact(self) -> None:
        """Rewrite with one line per source, once a run has appended to it."""
        if self._appended:
            lines = [self.records[rel].to_json() for rel in sorted(self.records)]
            atomic_write_text(self.path, "\n".join(lines) + "\n")
            self._appended = 0

    def clear(self) -> None:
        self.records.clear()
        self.path.unlink(missing_ok=True)
