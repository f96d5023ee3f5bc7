"""Shared fixtures: real clips made on the fly from a real face photo (no mocks, no binaries in git)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")

import stacks  # noqa: E402,F401  (sets quiet native logging before cv2/mediapipe load)
from tests.fixtures.clips import (  # noqa: E402
    ClipTruth,
    astronaut_head,
    make_corrupt_file,
    make_face_clip,
    make_faceless_clip,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SMALL = (320, 240)  # frame size for test clips: real decode + detection, a fraction of the time


@pytest.fixture(scope="session")
def head() -> np.ndarray:
    return astronaut_head()


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory, head: np.ndarray) -> dict:
    """A seed-style clip folder with good clips of two labels and every kind of bad file."""
    root = tmp_path_factory.mktemp("clips")
    truths: dict[str, ClipTruth] = {}
    for i, label in enumerate(["Happy", "Happy", "Happy", "Sad", "Sad", "Sad"]):
        name = f"{label}_{i + 1:04d}.mp4"
        photo = head if label == "Happy" else np.ascontiguousarray(head[:, ::-1])
        truths[name] = make_face_clip(photo, root / name, seconds=3.2, size=SMALL, seed=i)
    make_faceless_clip(root / "Neutral_0901.mp4", seconds=3.2, size=SMALL)
    make_face_clip(head, root / "Happy_0902.mp4", seconds=1.0, size=SMALL, seed=9)
    make_corrupt_file(root / "Sad_0903.mp4")
    (root / "README.txt").write_text("not data\n")
    shutil.copy(root / "Happy_0001.mp4", root / "nolabel.mp4")
    return {"root": root, "truths": truths}


@pytest.fixture(autouse=True)
def _no_console_logging_left_behind():
    """A test that runs ``cli.main`` in this process sets up the console logging (pipeline.console); the next
    test starts without it, so what a test sees on stdout never depends on the tests before it."""
    yield
    import logging

    from pipeline.console import PROJECT_LOGGERS, ConsoleHandler

    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(handler)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


def shared_faces() -> Path:
    path = SHARED_DATA / "faces"
    if not path.is_dir():
        pytest.skip(f"real face photos not found at {path} (CI has ../shared/data beside the repo)")
    return path


__all__ = ["REPO", "SMALL", "shared_faces", "make_corrupt_file", "make_face_clip", "make_faceless_clip"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The face finders the tests left open are closed while MediaPipe still can (not at interpreter exit)."""
    from stacks.faces import close_finders

    close_finders()
