"""Dataset layouts (RAVDESS, CREMA-D), label corrections, the label map and person-disjoint splits."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.prepare.labelling import LabelFileError, Relabeller, dataset_name, parse_label_map, read_corrections
from pipeline.prepare.run import REPORT_NAME, PrepareError, format_summary, run_prepare
from pipeline.prepare.settings import PrepareConfig, SplitSettings
from pipeline.prepare.sources import discover
from pipeline.prepare.splits import SplitFileError, assign_splits
from stacks.settings import StackSettings


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")  # discovery reads names only


def test_ravdess_and_cremad_names_give_label_and_actor(tmp_path: Path) -> None:
    _touch(tmp_path, "Actor_01/01-01-03-01-01-01-01.mp4", "Actor_12/02-01-08-02-02-01-12.mp4",
           "1001_DFA_ANG_XX.flv", "1091_IEO_SAD_HI.flv", "Actor_01/01-01-09-01-01-01-01.mp4", "Happy_0001.mp4")
    sources, rejected = discover(tmp_path)
    found = {s.rel: (s.label, s.group) for s in sources}
    assert found == {
        "Actor_01/01-01-03-01-01-01-01.mp4": ("happy", "ravdess_actor_01"),  # the folder is not the label
        "Actor_12/02-01-08-02-02-01-12.mp4": ("surprised", "ravdess_actor_12"),
        "1001_DFA_ANG_XX.flv": ("angry", "cremad_actor_1001"),
        "1091_IEO_SAD_HI.flv": ("sad", "cremad_actor_1091"),
        "Happy_0001.mp4": ("happy", None),
    }
    assert [r.reason for r in rejected] == ["a RAVDESS / CREMA-D name with an unknown emotion code"]
    only, rejected = discover(tmp_path, layout="cremad")
    assert {s.label for s in only} == {"angry", "sad"} and len(rejected) == 4
    assert dataset_name("01-01-05-01-01-01-07", "seed") is None


def test_split_by_actor_keeps_each_person_in_one_split(tmp_path: Path) -> None:
    names = [f"Actor_{a:02d}/01-01-0{e}-01-01-01-{a:02d}.mp4" for a in range(1, 9) for e in (1, 3, 4)]
    _touch(tmp_path, *names)
    sources, _ = discover(tmp_path)
    splits = assign_splits(sources, SplitSettings(val_fraction=0.25, test_fraction=0.25, by="actor"))
    per_actor: dict[str, set[str]] = {}
    for s in sources:
        per_actor.setdefault(s.group, set()).add(splits[s.rel])
    assert all(len(v) == 1 for v in per_actor.values())
    counts = sorted(next(iter(v)) for v in per_actor.values())
    assert counts.count("val") == 2 and counts.count("test") == 2 and counts.count("train") == 4
    _touch(tmp_path, "Happy_0001.mp4")
    with pytest.raises(SplitFileError, match="--split-by actor needs file names"):
        assign_splits(discover(tmp_path)[0], SplitSettings(by="actor"))


def test_corrections_then_label_map_then_allowed_labels() -> None:
    relabel = Relabeller({"Happy_0001.mp4": "sad", "clips/Sad_0002.mp4": "drop", "Missing_9.mp4": "happy"},
                         parse_label_map("surprised=shock, calm=drop"))
    assert relabel.apply("clips/Happy_0001.mp4", "happy") == ("sad", "")
    assert relabel.apply("clips/Sad_0002.mp4", "sad")[0] is None
    assert relabel.apply("x/Surprised_0003.mp4", "surprised") == ("shock", "")
    assert relabel.apply("x/01-01-02-01-01-01-01.mp4", "calm") == (None, "label 'calm' dropped by the label map")
    assert relabel.counts == {"corrected": 1, "mapped": 1, "dropped": 2}
    assert relabel.unused_corrections() == ["Missing_9.mp4"]
    with pytest.raises(LabelFileError, match="not FROM=TO"):
        parse_label_map("surprised:shock")


def test_a_correction_without_a_label_names_its_line(tmp_path: Path) -> None:
    """A spreadsheet row cut short (no label cell) is the user's to fix, not a crash (it was an AttributeError)."""
    corrections = tmp_path / "label_correction.csv"
    corrections.write_text("file,label\nHappy_0001.mp4,Sad\n,\nHappy_0002.mp4\n", encoding="utf-8")
    with pytest.raises(LabelFileError, match=r"label_correction.csv:4: Happy_0002.mp4 has no label"):
        read_corrections(corrections)
    corrections.write_text("file,label\nHappy_0001.mp4,Sad\n,\n", encoding="utf-8")  # rows with no file: skipped
    assert read_corrections(corrections) == {"Happy_0001.mp4": "sad"}
    label_map = tmp_path / "map.csv"
    label_map.write_text("from,to\nsurprised,shock\ncalm\n", encoding="utf-8")
    with pytest.raises(LabelFileError, match=r"map.csv:3: calm has no to"):
        parse_label_map(str(label_map))


def test_prepare_applies_the_source_folders_corrections_and_reports_them(head: np.ndarray, tmp_path: Path) -> None:
    source = tmp_path / "photos"
    source.mkdir()
    bgr = cv2.cvtColor(head, cv2.COLOR_RGB2BGR)
    for name in ("Happy_0001.png", "Happy_0002.png", "Sad_0003.png", "Surprised_0004.png", "Surprised_0005.png"):
        cv2.imwrite(str(source / name), bgr)
    (source / "label_correction.csv").write_text("file,label\nHappy_0002.png,sad\nSad_0003.png,drop\n")
    config = PrepareConfig(source=source, out=tmp_path / "stacks", stack=StackSettings(size=32),
                           split=SplitSettings(val_fraction=0.0), label_map={"surprised": "shock"}, workers=1,
                           progress=False)
    result = run_prepare(config)
    assert sorted((r.source, r.label) for r in result.rows) == [
        ("Happy_0001.png", "happy"), ("Happy_0002.png", "sad"), ("Surprised_0004.png", "shock"),
        ("Surprised_0005.png", "shock")]
    report = json.loads((tmp_path / "stacks" / REPORT_NAME).read_text())
    assert report["labels"]["corrected"] == 1 and report["labels"]["dropped"] == 1 and report["labels"]["mapped"] == 2
    assert "labels: 1 corrected" in format_summary(report) and "2 mapped, 1 dropped" in format_summary(report)
    with pytest.raises(PrepareError, match="needs a 'file' and a 'label' column"):
        (source / "label_correction.csv").write_text("name_of_file,new\nx,y\n")
        run_prepare(config)
