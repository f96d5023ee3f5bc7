"""The CSV files a user hands `prepare` that map one column onto another: label corrections, a label map
file and a split file. Spreadsheets name columns as they like, so each column may go by several names."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def read_pairs(path: Path, key_columns: Sequence[str], value_columns: Sequence[str], error: type[Exception],
               what: str) -> list[tuple[int, str, str]]:
    """``(line, key, value)`` for each row with a key, keys with ``/`` separators; ``error`` names ``what`` file
    it is (e.g. "split file") when it cannot be read, lacks a column, or leaves a key without a value."""
    key_name, value_name = key_columns[0], value_columns[0]
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = {name.strip().lower(): name for name in reader.fieldnames or []}
            key = next((header[c] for c in key_columns if c in header), None)
            value = next((header[c] for c in value_columns if c in header), None)
            if key is None or value is None:
                raise error(f"{what} {path} needs a '{key_name}' and a '{value_name}' column; it has "
                            f"{', '.join(reader.fieldnames or []) or 'no header'}")
            pairs = []
            for line, row in enumerate(reader, start=2):
                name = (row[key] or "").strip().replace("\\", "/")
                if not name:
                    continue
                given = (row[value] or "").strip()
                if not given:
                    raise error(f"{path}:{line}: {name} has no {value_name}")
                pairs.append((line, name, given))
            return pairs
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
