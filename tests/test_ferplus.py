"""The FER+ layout: majority labels, vote distributions in the manifest, dropped rows, splits."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.prepare.ferplus import (
    FerPlusError,
    discover_ferplus,
    format_votes,
    is_ferplus,
    majority,
    parse_votes,
    read_label_file,
)
from pipeline.prepare.run import REPORT_NAME, PrepareError, format_summary, run_prepare
from pipeline.prepare.settings import PrepareConfig
from pipeline.prepare.sources import discover
from stacks import read_manifest
from stacks.settings import StackSettings
from tests.conftest import SHARED_DATA

#                 neutral happy surprise sad anger disgust fear contempt unknown NF
TRAIN_ROWS = {
    "fer0000001.png": (6, 0, 0, 4, 0, 0, 0, 0, 0, 0),  # neutral, 4 votes for sad
    "fer0000002.png": (0, 9, 1, 0, 0, 0, 0, 0, 0, 0),  # happy
    "fer0000003.png": (2, 0, 0, 0, 0, 0, 0, 0, 8, 0),  # majority unknown: dropped
    "fer0000004.png": (1, 0, 0, 0, 0, 0, 0, 0, 1, 8),  # majority NF: dropped
    "fer0000005.png": (3, 0, 0, 0, 0, 0, 0, 6, 1, 0),  # majority contempt: dropped
    "fer0000006.png": (0, 0, 0, 4, 4, 0, 0, 2, 0, 0),  # sad and anger tie: sad (first in FER+ order)
    "fer0000007.png": (0, 0, 0, 0, 2, 7, 1, 0, 0, 0),  # disgust
}
SPLIT_ROWS = {
    "train": TRAIN_ROWS,
    "valid": {"fer0000008.png": (1, 8, 0, 0, 0, 0, 0, 0, 1, 0), "fer0000009.png": (7, 0, 0, 3, 0, 0, 0, 0, 0, 0)},
    # fer0000010: a 5-5 tie of neutral and unknown is neutral (first in FER+ order), so it is kept
    "test": {"fer0000010.png": (5, 0, 0, 0, 0, 0, 0, 0, 5, 0), "fer0000011.png": (0, 0, 2, 0, 0, 0, 8, 0, 0, 0)},
}


def _face48(head: np.ndarray, flip: bool) -> np.ndarray:
    """A 48x48 grey face like FER2013's, from the astronaut photo (made in the test, never copied from data)."""
    grey = cv2.cvtColor(head, cv2.COLOR_RGB2GRAY)
    face = cv2.resize(grey[20:240, 40:260], (48, 48), interpolation=cv2.INTER_AREA)
    return face[:, ::-1] if flip else face


@pytest.fixture(scope="module")
def ferplus_root(tmp_path_factory: pytest.TempPathFactory, head: np.ndarray) -> Path:
    root = tmp_path_factory.mktemp("ferplus")
    for folder, rows in SPLIT_ROWS.items():
        (root / folder).mkdir()
        lines = []
        for i, (name, votes) in enumerate(rows.items()):
            cv2.imwrite(str(root / folder / name), _face48(head, flip=i % 2 == 1))
            lines.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
        (root / folder / "label.csv").write_text("\n".join(lines) + "\n")
    # listed in label.csv, but the image is missing
    with open(root / "train" / "label.csv", "a") as handle:
        handle.write('fer0000099.png,"(0, 0, 48, 48)",9,1,0,0,0,0,0,0,0,0\n')
    return root


def test_majority_and_votes_are_read_and_unknown_nf_contempt_dropped(ferplus_root: Path) -> None:
    assert is_ferplus(ferplus_root) and not is_ferplus(ferplus_root / "train")
    sources, rejected = discover(ferplus_root)  # layout auto recognises FER+
    by_name = {s.path.name: s for s in sources}
    assert {n: s.label for n, s in by_name.items()} == {
        "fer0000001.png": "neutral", "fer0000002.png": "happy", "fer0000006.png": "sad",
        "fer0000007.png": "disgust", "fer0000008.png": "happy", "fer0000009.png": "neutral",
        "fer0000010.png": "neutral", "fer0000011.png": "fear"}
    assert parse_votes(by_name["fer0000001.png"].votes) == {"neutral": 6, "sad": 4}
    # contempt votes are left out of the distribution; unknown and NF never count
    assert parse_votes(by_name["fer0000006.png"].votes) == {"sad": 4, "angry": 4}
    assert parse_votes(by_name["fer0000008.png"].votes) == {"neutral": 1, "happy": 8}
    assert {r.rel: r.category for r in rejected} == {
        "train/fer0000003.png": "majority unknown", "train/fer0000004.png": "majority not a face",
        "train/fer0000005.png": "majority contempt (not a class here)", "train/fer0000099.png": "missing"}
    assert majority((5, 0, 0, 0, 0, 0, 0, 0, 5, 0)) == "neutral"
    assert majority((4, 0, 0, 0, 0, 0, 0, 0, 5, 1)) == "unknown"


def test_splits_follow_the_ferplus_folders(ferplus_root: Path) -> None:
    sources, _ = discover_ferplus(ferplus_root)
    assert {s.path.name: s.split for s in sources} == {
        "fer0000001.png": "train", "fer0000002.png": "train", "fer0000006.png": "train",
        "fer0000007.png": "train", "fer0000008.png": "val", "fer0000009.png": "val", "fer0000010.png": "test",
        "fer0000011.png": "test"}


def test_prepare_writes_votes_into_the_manifest_and_reports_the_dropped(ferplus_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "stacks"
    config = PrepareConfig(source=ferplus_root, out=out, stack=StackSettings(size=48, on_no_face="center"),
                           workers=1, progress=False)
    run_prepare(config)
    rows = {Path(r.source).name: r for r in read_manifest(out)}
    assert set(rows) == {"fer0000001.png", "fer0000002.png", "fer0000006.png", "fer0000007.png",
                         "fer0000008.png", "fer0000009.png", "fer0000010.png", "fer0000011.png"}
    assert rows["fer0000001.png"].votes == "neutral:6;sad:4" and rows["fer0000001.png"].label == "neutral"
    assert rows["fer0000011.png"].split == "test" and rows["fer0000008.png"].split == "val"
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["skipped_by_reason"] == {"majority contempt (not a class here)": 1, "majority not a face": 1,
                                           "majority unknown": 1, "missing": 1}
    # it said "(interval 5, 18 channels per clip stack, 48x48)" of 1-channel image stacks
    assert format_summary(report).splitlines()[0] == f"Stacks in {out}  (images, 1 channel each, 48x48)"
    # a rerun reuses every stack and still writes the votes
    run_prepare(config)
    assert read_manifest(out)[0].votes


def test_a_label_map_of_a_class_that_only_gets_votes_is_used(ferplus_root: Path) -> None:
    from pipeline.prepare.labelling import Relabeller

    relabeller = Relabeller(label_map={"angry": "drop", "contemptuous": "drop"})
    discover_ferplus(ferplus_root, relabeller=relabeller)
    # angry is no image's majority here, but its votes are mapped: prepare warned "no file has" it
    assert relabeller.report()["unused_label_map"] == ["contemptuous"]


def test_a_broken_label_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "label.csv").write_text('fer0000001.png,"(0, 0, 48, 48)",6,0,0,4\n')
    with pytest.raises(PrepareError, match=r"label.csv:1: 6 fields, a FER\+ row has 12"):
        run_prepare(PrepareConfig(source=tmp_path, out=tmp_path / "out", progress=False))
    (tmp_path / "train" / "label.csv").write_text('fer0000001.png,"(0, 0, 48, 48)",6,0,0,4,x,0,0,0,0,0\n')
    with pytest.raises(FerPlusError, match="must be numbers"):
        read_label_file(tmp_path / "train" / "label.csv")


def test_votes_cell_round_trip() -> None:
    assert format_votes({"sad": 4, "neutral": 6, "fear": 0}) == "neutral:6;sad:4"
    assert parse_votes("neutral:6;sad:4") == {"neutral": 6, "sad": 4} and parse_votes("") == {}


def test_the_real_ferplus_folder() -> None:
    root = SHARED_DATA / "ferplus"
    if not (root / "train" / "label.csv").is_file():
        pytest.skip(f"FER+ not found at {root} (CI has ../shared/data beside the repo)")
    sources, rejected = discover(root)
    listed = {split: len(read_label_file(root / split / "label.csv")) for split in ("train", "valid", "test")}
    assert listed == {"train": 28558, "valid": 3579, "test": 3573}
    assert len(sources) + len(rejected) == sum(listed.values())
    per_split = {split: sum(s.split == split for s in sources) for split in ("train", "val", "test")}
    assert per_split == {"train": 28217, "val": 3529, "test": 3517}  # FER+ minus the dropped majorities
    categories = [r.category for r in rejected]
    assert categories.count("majority unknown") == 222 and categories.count("majority not a face") == 3
    assert categories.count("majority contempt (not a class here)") == 222
    assert sorted({s.label for s in sources}) == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    first = next(s for s in sources if s.rel == "train/fer0000000.png")
    # fer0000000.png: 4 neutral, 1 sadness, 3 anger, 2 disgust (FER+'s train/label.csv, first row)
    assert first.label == "neutral" and parse_votes(first.votes) == {"neutral": 4, "sad": 1, "angry": 3, "disgust": 2}
