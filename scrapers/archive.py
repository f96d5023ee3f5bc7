"""Safe zip extraction for downloaded datasets.

A dataset archive comes from the internet, so it is treated as hostile: every entry is checked
before a single byte is written (no absolute paths, no ``..``, no symlinks or special files, no
encrypted entries, declared sizes and compression ratios under limits, enough free disk), the
bytes really written are counted again while extracting (a header can lie), and everything goes
to a temporary folder beside the target that is renamed into place only once complete. A failure
at any point leaves the target as it was and removes the temporary folder.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_MAX_BYTES = 20 * 1024**3  # 20 GiB: a clip dataset is a few GB; a bomb is caught long before this.
DEFAULT_MAX_RATIO = 100.0  # video and images compress ~1:1, CSV/text ~10:1; 1000:1 is a run of zeros.
DEFAULT_MAX_FILES = 500_000  # an "inode bomb" of millions of empty files is refused too.
RATIO_MIN_BYTES = 1024**2  # small entries (a blank CSV, padding) may compress far better than 100:1.
CHUNK = 1024**2
PARTIAL_MARK = ".extracting-"
# Junk that macOS and Windows add to archives: `._x.mp4` AppleDouble files would reach prepare as
# corrupt clips, so they are left out (and counted in the result).
JUNK_DIRS = {"__MACOSX"}
JUNK_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}


class ArchiveError(Exception):
    """The archive is unreadable, unsafe or over a limit; nothing was extracted."""


class CorruptArchiveError(ArchiveError):
    """The archive's bytes are damaged (bad compressed data, CRC mismatch, truncated): download it again."""


# What zipfile lets through from damaged data: its own BadZipFile (bad CRC, bad headers) and the
# decompressors' errors (deflate, bzip2, lzma), EOFError for a stream that ends early.
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, lzma.LZMAError)


@dataclass(frozen=True)
class Limits:
    """How much an archive may unpack to: total bytes, entries, and compression ratio."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_ratio: float = DEFAULT_MAX_RATIO
    max_files: int = DEFAULT_MAX_FILES

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_ratio <= 1 or self.max_files <= 0:
            raise ValueError("archive limits must be positive (and the ratio above 1)")


@dataclass(frozen=True)
class Entry:
    """A checked zip member: its info and the relative path it will be written to."""

    info: zipfile.ZipInfo
    relative: PurePosixPath


@dataclass(frozen=True)
class ExtractResult:
    dest: Path
    files: int
    bytes: int
    skipped_junk: int


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relative(name: str) -> PurePosixPath | None:
    """The relative path a member name may be written to; raises ArchiveError for unsafe names.

    Backslashes count as separators (some Windows tools write them), so ``..\\x`` is caught too.
    Returns None for a name that is only the archive's root (``./``).
    """
    if "\x00" in name:
        raise ArchiveError(f"refused entry {name!r}: NUL byte in its name")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise ArchiveError(f"refused entry {name!r}: absolute path")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"refused entry {name!r}: '..' in its path (would write outside the target)")
    return PurePosixPath(*parts) if parts else None


def _file_type(info: zipfile.ZipInfo) -> int:
    """The Unix file type in the entry's external attributes (0 when the archiver stored none)."""
    return stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0


def _is_junk(relative: PurePosixPath) -> bool:
    return bool(JUNK_DIRS & set(relative.parts)) or relative.name in JUNK_FILES or relative.name.startswith("._")


def check_archive(zf: zipfile.ZipFile, archive_size: int, limits: Limits) -> tuple[list[Entry], int]:
    """Check every entry before anything is written; returns the file entries to extract and the junk count."""
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise ArchiveError(f"archive has {len(infos)} entries, more than the limit of {limits.max_files}")
    entries: list[Entry] = []
    seen: set[PurePosixPath] = set()
    junk = 0
    total = 0
    for info in infos:
        relative = safe_relative(info.filename)
        kind = _file_type(info)
        if kind == stat.S_IFLNK:
            raise ArchiveError(f"refused entry {info.filename!r}: symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"refused entry {info.filename!r}: special file (device, pipe or socket)")
        if relative is None or info.is_dir() or kind == stat.S_IFDIR:
            continue
        if _is_junk(relative):
            junk += 1
            continue
        if info.flag_bits & 0x1:
            raise ArchiveError(f"refused entry {info.filename!r}: encrypted (not supported)")
        if relative in seen:
            raise ArchiveError(f"refused archive: entry {info.filename!r} appears twice")
        seen.add(relative)
        if info.file_size > RATIO_MIN_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ArchiveError(
                f"refused entry {info.filename!r}: compression ratio "
                f"{info.file_size / max(info.compress_size, 1):.0f}:1 is over {limits.max_ratio:.0f}:1 (zip bomb?)")
        total += info.file_size
        if total > limits.max_bytes:
            raise ArchiveError(f"archive unpacks to more than the limit of {human_bytes(limits.max_bytes)} "
                               "(zip bomb? raise --max-size if the dataset really is that large)")
        entries.append(Entry(info, relative))
    if total > RATIO_MIN_BYTES and total > limits.max_ratio * max(archive_size, 1):
        raise ArchiveError(f"archive unpacks to {human_bytes(total)} from {human_bytes(archive_size)}, a ratio over "
                           f"{limits.max_ratio:.0f}:1 (zip bomb?)")
    return entries, junk


def _copy_entry(zf: zipfile.ZipFile, entry: Entry, target: Path, budget: int,
                progress: Callable[[int], None]) -> int:
    """Stream one member to ``target``, counting real bytes; returns how many were written."""
    written = 0
    with zf.open(entry.info) as src, open(target, "xb") as dst:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            # zipfile stops at the declared size and checks the CRC, but count anyway: these two
            # lines are what stands between a lying header and a full disk.
            if written > entry.info.file_size:
                raise ArchiveError(f"entry {entry.info.filename!r} holds more bytes than its header declares")
            if written > budget:
                raise ArchiveError("extraction went past the size limit (the archive's headers understate it)")
            dst.write(chunk)
            progress(len(chunk))
    return written


def _inside(root: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def extract_zip(archive: Path, dest: Path, limits: Limits = Limits(), *, replace: bool = False,
                progress: Callable[[int], None] | None = None,
                on_total: Callable[[int], None] | None = None) -> ExtractResult:
    """Extract ``archive`` into ``dest``, all or nothing.

    Writes into a temporary ``.<dest>.extracting-*`` folder beside ``dest`` (same file system, so
    the final step is a rename) and moves it into place only when every entry is written. With
    ``replace`` an existing ``dest`` is swapped out; without it an existing ``dest`` is an error.
    ``on_total`` gets the declared total size before extraction starts (for a progress bar).
    """
    archive, dest = Path(archive), Path(dest)
    if archive.resolve() == dest.resolve() or dest.resolve() in archive.resolve().parents:
        # Replacing dest would delete the archive and everything beside it.
        raise ArchiveError(f"cannot extract into {dest}: it is or contains the archive {archive}")
    if dest.exists() and not replace:
        raise ArchiveError(f"{dest} already exists")
    try:
        zf = zipfile.ZipFile(archive)
    except _CORRUPT as exc:
        raise CorruptArchiveError(f"{archive} is not a readable zip archive ({exc})") from exc
    with zf:
        entries, junk = check_archive(zf, archive.stat().st_size, limits)
        declared = sum(e.info.file_size for e in entries)
        dest.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(dest.parent).free
        if declared > free:
            raise ArchiveError(f"not enough free disk in {dest.parent}: the archive unpacks to "
                               f"{human_bytes(declared)}, {human_bytes(free)} is free")
        if on_total is not None:
            on_total(declared)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}{PARTIAL_MARK}", dir=dest.parent))
        try:
            written = 0
            for entry in entries:
                target = tmp.joinpath(*entry.relative.parts)
                # Belt and braces: check_archive already refused '..' and absolute names, and no
                # symlink can exist in a folder we just created and only write regular files to.
                if not _inside(tmp, target):
                    raise ArchiveError(f"refused entry {entry.info.filename!r}: resolves outside the target")
                target.parent.mkdir(parents=True, exist_ok=True)
                written += _copy_entry(zf, entry, target, limits.max_bytes - written, progress or (lambda n: None))
                _set_mtime(target, entry.info)
            _move_into_place(tmp, dest, replace)
        except _CORRUPT as exc:  # a flipped bit in the download: its compressed data or CRC does not check out
            raise CorruptArchiveError(f"{archive.name} is corrupt ({type(exc).__name__}: {exc})") from exc
        except (NotImplementedError, RuntimeError) as exc:  # unsupported compression method, encryption
            raise ArchiveError(f"cannot extract {archive}: {exc}") from exc
        except OSError as exc:
            raise ArchiveError(f"cannot write {exc.filename or dest}: {exc.strerror or exc}") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return ExtractResult(dest, len(entries), written, junk)


def _set_mtime(target: Path, info: zipfile.ZipInfo) -> None:
    """Keep the archive's file dates (prepare and humans sort clips by them); a bad date is ignored."""
    try:
        mtime = time.mktime((*info.date_time, 0, 0, -1))
        os.utime(target, (mtime, mtime))
    except (OverflowError, ValueError):
        pass


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _move_into_place(tmp: Path, dest: Path, replace: bool) -> None:
    """Rename the finished temporary folder to ``dest``; an old ``dest`` is moved aside first, then deleted."""
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it owner-only; the dataset is an ordinary folder
    old = None
    if dest.exists():
        if not replace:
            raise ArchiveError(f"{dest} appeared while extracting; not touching it")
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, old / dest.name)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def matches_archive(archive: Path, dest: Path) -> bool:
    """True when ``dest`` already holds every file of ``archive`` with the right size (a finished extraction)."""
    if not dest.is_dir():
        return False
    try:
        with zipfile.ZipFile(archive) as zf:
            entries, _ = check_archive(zf, Path(archive).stat().st_size, Limits(max_bytes=2**62, max_ratio=2**62))
    except (*_CORRUPT, ArchiveError, OSError):
        return False
    for entry in entries:
        target = dest.joinpath(*entry.relative.parts)
        if not target.is_file() or target.stat().st_size != entry.info.file_size:
            return False
    return True
