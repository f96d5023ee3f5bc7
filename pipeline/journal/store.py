"""The journal's entries: SQLite rows plus one clip file each, kept whole across crashes.

The order of writes is what makes a crash harmless. A new clip is written to ``incoming/`` and
fsynced, classified, moved into ``clips/`` under the entry's server-chosen name, and only then is
the row committed. Deleting commits the row's removal first, then unlinks the clip. A kill at any
point therefore leaves either the whole entry or, at worst, a clip no row points to; ``recover``
removes those (and anything left in ``incoming/``) at start, so there is never a row without a clip
and never a stray clip once the server runs again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
DATABASE = "journal.db"
LOCK_NAME = "server.lock"  # held by the running server (``server.claim``)
OWN_NAMES = {DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal", LOCK_NAME, "clips", "incoming"}
ENTRY_ID = re.compile(r"^[0-9a-f]{32}$")
CLIP_TYPES = {".webm": "video/webm", ".mkv": "video/x-matroska", ".mp4": "video/mp4", ".mov": "video/quicktime",
              ".avi": "video/x-msvideo", ".flv": "video/x-flv"}

_SCHEMA = """
CREATE TABLE entries (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,         -- ISO 8601, local time with its UTC offset
    day TEXT NOT NULL,                -- the local date of created_at, YYYY-MM-DD
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    probabilities TEXT NOT NULL,      -- JSON {class: probability}
    face_ratio REAL NOT NULL,
    seconds REAL NOT NULL,
    windows TEXT NOT NULL,            -- JSON list, as predict --json writes it
    note TEXT NOT NULL DEFAULT '',
    clip TEXT NOT NULL,               -- file name in clips/, chosen by the server
    model TEXT NOT NULL
);
CREATE INDEX entries_day ON entries(day);
"""


class StoreError(Exception):
    """A data folder the journal cannot use; the message says why and what to do."""


def still_image(head: bytes) -> str | None:
    """The kind of photo the first bytes announce (JPEG, PNG, GIF, WebP, HEIC, AVIF), or None. FFmpeg reads
    a photo as a one-frame video, which would be refused as "0.04 s long"."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"GIF8"):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"avif"):
        return "AVIF" if head[8:12] == b"avif" else "HEIC"
    return None


def sniff_suffix(head: bytes) -> str:
    """A file suffix for the container the first bytes announce (the decoder still has the last word).

    Only the suffix of a name the server chooses; a client's file name is never used.
    """
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return ".webm" if b"webm" in head[:64] else ".mkv"
    if head[4:8] == b"ftyp":
        return ".mov" if head[8:12] == b"qt  " else ".mp4"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return ".avi"
    if head.startswith(b"FLV"):
        return ".flv"
    return ".mp4"


def make_private(root: Path, whole_folder: bool) -> None:
    """Owner-only permissions on the journal's files (its clips are faces, its notes a diary): the folders
    0700, the files 0600. ``whole_folder``: the data folder itself too, when it is the journal's own
    (created for it, or holding nothing else), never a folder it shares with other files."""
    folders = [root / "clips", root / "incoming"] + ([root] if whole_folder else [])
    files = [path for path in [root / name for name in sorted(OWN_NAMES)] + list((root / "clips").iterdir())
             if path.is_file()]
    for path, mode in [(folder, 0o700) for folder in folders] + [(file, 0o600) for file in files]:
        if path.stat().st_uid != os.getuid():  # another account's: not ours to change (chmod would fail)
            log.warning("journal: %s belongs to another account, so it keeps its permissions", path)
            continue
        os.chmod(path, mode)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Recovery:
    """What ``recover`` cleaned at start."""

    incoming: int = 0  # unfinished uploads removed
    stray_clips: int = 0  # clips without an entry removed
    missing_clips: list[str] | None = None  # entries whose clip file is gone (kept, reported)


class EntryStore:
    """Entries in ``<data_dir>/journal.db`` (WAL), clips in ``<data_dir>/clips/``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)
        self.clips = self.root / "clips"
        self.incoming = self.root / "incoming"
        try:
            own = not self.root.exists() or all(path.name in OWN_NAMES for path in self.root.iterdir())
            self.clips.mkdir(parents=True, exist_ok=True)
            self.incoming.mkdir(exist_ok=True)
            self._db = sqlite3.connect(self.root / DATABASE, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
            make_private(self.root, own)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot use {self.root} as the journal's data folder ({exc})") from exc
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            # One script, one transaction: a kill half-way leaves version 0 and no tables.
            self._db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        elif version > SCHEMA_VERSION:
            raise StoreError(f"{self.root / DATABASE} was written by a newer version of this project (schema "
                             f"{version}, this one knows {SCHEMA_VERSION}); update the project to open it")

    def close(self) -> None:
        self._db.close()

    # -- start-up -----------------------------------------------------------------------------------------
    def recover(self) -> Recovery:
        """Remove what an interrupted run left: unfinished uploads and clips that no entry holds."""
        out = Recovery(missing_clips=[])
        for path in self.incoming.iterdir():
            if path.is_file():
                path.unlink()
                out.incoming += 1
        with self._lock:
            held = {row["clip"]: row["id"] for row in self._db.execute("SELECT id, clip FROM entries")}
        for path in self.clips.iterdir():
            if path.is_file() and path.name not in held:
                path.unlink()
                out.stray_clips += 1
        out.missing_clips = [entry for clip, entry in held.items() if not (self.clips / clip).is_file()]
        return out

    # -- writing ------------------------------------------------------------------------------------------
    def new_upload(self) -> Path:
        """A fresh path in ``incoming/`` for an upload being received."""
        return self.incoming / f"{uuid.uuid4().hex}.part"

    def add(self, upload: Path, result: dict[str, Any], note: str, model: str,
            created_at: datetime | None = None) -> dict[str, Any]:
        """Move a classified upload into ``clips/`` and commit its entry; returns the entry."""
        created = (created_at or datetime.now()).astimezone().replace(microsecond=0)
        entry_id = uuid.uuid4().hex
        clip = f"{entry_id}{upload.suffix if upload.suffix in CLIP_TYPES else '.mp4'}"
        final = self.clips / clip
        with open(upload, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(upload, final)
        _fsync_dir(self.clips)
        row = {
            "id": entry_id, "created_at": created.isoformat(), "day": created.date().isoformat(),
            "label": result["label"], "confidence": float(result["confidence"]),
            "probabilities": json.dumps(result["probabilities"]), "face_ratio": float(result["face_ratio"]),
            "seconds": float(result["seconds"]), "windows": json.dumps(result["windows"]), "note": note,
            "clip": clip, "model": model,
        }
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(f"INSERT INTO entries ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                 tuple(row.values()))
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return self._entry(row)

    def set_note(self, entry_id: str, note: str) -> dict[str, Any] | None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            changed = self._db.execute("UPDATE entries SET note = ? WHERE id = ?", (note, entry_id)).rowcount
        return self.get(entry_id) if changed else None

    def delete(self, entry_id: str) -> bool:
        """Remove the row, then its clip (a crash between the two leaves a stray clip, removed at start)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT clip FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if row is None:
                return False
            self._db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
        (self.clips / row["clip"]).unlink(missing_ok=True)
        return True

    # -- reading ------------------------------------------------------------------------------------------
    def get(self, entry_id: str) -> dict[str, Any] | None:
        if not ENTRY_ID.match(entry_id):
            return None
        with self._lock:
            row = self._db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return self._entry(dict(row)) if row else None

    def entries(self, since: date | None = None, until: date | None = None) -> list[dict[str, Any]]:
        """Newest first; ``since`` and ``until`` are local dates, both included."""
        where, params = [], []
        if since is not None:
            where.append("day >= ?")
            params.append(since.isoformat())
        if until is not None:
            where.append("day <= ?")
            params.append(until.isoformat())
        sql = "SELECT * FROM entries" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at DESC, rowid DESC", params).fetchall()
        return [self._entry(dict(r)) for r in rows]

    def clip_file(self, entry_id: str) -> tuple[Path, str] | None:
        """The stored clip of an entry and its media type; the name comes from the database, never a request."""
        if not ENTRY_ID.match(entry_id):
            return None
        with self._lock:
            row = self._db.execute("SELECT clip FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            return None
        path = self.clips / row["clip"]
        return (path, CLIP_TYPES.get(path.suffix, "application/octet-stream")) if path.is_file() else None

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    @staticmethod
    def _entry(row: dict[str, Any]) -> dict[str, Any]:
        entry = dict(row)
        entry.pop("clip")  # the server's file name; clients use clip_url
        entry["probabilities"] = json.loads(entry["probabilities"])
        entry["windows"] = json.loads(entry["windows"])
        entry["clip_url"] = f"/api/entries/{entry['id']}/clip"
        return entry
