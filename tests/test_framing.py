"""The crop margin a model was trained at, read back for serving: from the checkpoint, else its manifest."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stacks.framing import checkpoint_framing
from stacks.manifest import ManifestRow, write_manifest
from stacks.settings import StackSettings


def old_checkpoint(folder: Path) -> dict:
    """A checkpoint saved before training recorded its framing: only the stack settings and the data folder."""
    return {"stack": StackSettings(size=48).to_dict(), "train": {"data": str(folder)}}


def rows(margins: list[float], fingerprint: str) -> list[ManifestRow]:
    return [ManifestRow(f"train/a/v{i}_000.tiff", "a", "train", f"v{i}.png", f"v{i}", 0, 1, 1, 1.0, fingerprint,
                        margin=m) for i, m in enumerate(margins)]


def test_recorded_framing_wins(tmp_path: Path) -> None:
    assert checkpoint_framing({"framing": {"margin": 0.05}, **old_checkpoint(tmp_path)}) == {"margin": 0.05}


def test_old_checkpoint_measures_its_manifest(tmp_path: Path) -> None:
    fingerprint = StackSettings(size=48).fingerprint()
    write_manifest(tmp_path, rows([0.02, 0.04, 0.09], fingerprint) + rows([0.5], "another-preparation"))
    assert checkpoint_framing(old_checkpoint(tmp_path)) == {"margin": 0.04}


def test_no_manifest_serves_at_the_asked_margin_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert checkpoint_framing(old_checkpoint(tmp_path / "gone")) == {}
    assert not caplog.records


def test_unreadable_manifest_is_said_not_silently_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "manifest.csv").write_bytes(b"\x00\xff not,a\nmanifest\x00")
    with caplog.at_level(logging.WARNING):
        assert checkpoint_framing(old_checkpoint(tmp_path)) == {}
    assert "cannot be read" in caplog.text and "manifest.csv" in caplog.text
