"""Write files so that a reader sees the old file or the complete new one, never half of one."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

TMP_MARK = ".partial-"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The temporary name never ends in the final suffix, so globbing ``*.tiff`` or ``*.csv`` never
    picks up a file an interrupted run left behind.
    """
    path = Path(path)
    if path.is_dir():  # else the rename fails naming the temporary file, which the user never chose
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    blocking = next((p for p in path.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():  # mkdir would say "File exists", of a folder never asked for
        raise NotADirectoryError(errno.ENOTDIR, "a file stands where a folder of the path should be", str(blocking))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}-{threading.get_ident()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename == str(tmp):  # the error names the file asked for, not the temporary one
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_partials(folder: Path) -> int:
    """Delete temporary files left by a run that was killed mid-write; returns how many."""
    count = 0
    if folder.is_dir():
        for tmp in folder.rglob(f"*{TMP_MARK}*"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                count += 1
    return count
