from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.prepare.settings import SplitSettings
from pipeline.prepare.sources import discover
from pipeline.prepare.splits import SplitFileError, assign_splits, read_split_file
from stacks.settings import StackSettings


@pytest.mark.parametrize("interval,channels", [(5, 18), (10, 9), (15, 6), (1, 90)])
def test_channels_follow_interval(interval: int, channels: int) -> None:
    assert StackSettings(interval=interval).channels == channels


@pytest.mark.parametrize("kwargs,message", [
    ({"interval": 0}, "--interval"),
    ({"min_length": 100}, "--min-length"),
    ({"size": 4}, "--size"),
    ({"margin": -0.1}, "--margin"),
    ({"detector": "haar"}, "--detector"),
])
def test_bad_settings_name_the_flag(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StackSettings(**kwargs)


def test_fingerprint_changes_with_pixels_not_with_nothing() -> None:
    base = StackSettings()
    assert base.fingerprint() == StackSettings().fingerprint()
    assert base.fingerprint() != StackSettings(size=112).fingerprint()
    assert base.fingerprint() != StackSettings(detector="mesh").fingerprint()
    assert StackSettings.from_dict(base.to_dict()) == base


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_discover_layouts_and_rejections(tmp_path: Path) -> None:
    _touch(tmp_path, "Happy_0001.mp4", "Shock_0002.MOV", "sad/a.mkv", "sad/b.png", "clip.mp4", "notes.txt",
           "data.bin", ".hidden/Happy_0009.mp4", "train/angry/x.png", "test/angry/y.jpg")
    sources, rejected = discover(tmp_path)
    by_rel = {s.rel: s for s in sources}
    assert by_rel["Happy_0001.mp4"].label == "happy" and by_rel["Happy_0001.mp4"].video_id == "0001"
    assert by_rel["Shock_0002.MOV"].kind == "video"
    assert by_rel["sad/b.png"].kind == "image" and by_rel["sad/b.png"].label == "sad"
    assert by_rel["train/angry/x.png"].split == "train" and by_rel["test/angry/y.jpg"].split == "test"
    assert not any(".hidden" in s.rel for s in sources)
    reasons = {r.rel: r.reason for r in rejected}
    assert "no label" in reasons["clip.mp4"]
    assert "not a video or image" in reasons["data.bin"]
    assert "notes.txt" not in reasons  # documentation beside the data is not an error


def test_discover_unknown_label(tmp_path: Path) -> None:
    _touch(tmp_path, "Happy_0001.mp4", "Bored_0001.mp4")
    sources, rejected = discover(tmp_path, labels=("happy", "sad"))
    assert [s.rel for s in sources] == ["Happy_0001.mp4"]
    assert "unknown label 'bored'" in rejected[0].reason


def test_split_is_by_video_stratified_and_reproducible(tmp_path: Path) -> None:
    names = [f"{label}_{i:04d}.mp4" for label in ("Happy", "Sad") for i in range(10)]
    _touch(tmp_path, *names)
    sources, _ = discover(tmp_path)
    settings = SplitSettings(val_fraction=0.2, test_fraction=0.1, seed=3)
    splits = assign_splits(sources, settings)
    assert splits == assign_splits(list(reversed(sources)), settings)  # order of listing is irrelevant
    for label in ("happy", "sad"):
        mine = [splits[s.rel] for s in sources if s.label == label]
        assert (mine.count("val"), mine.count("test"), mine.count("train")) == (2, 1, 7)
    assert splits != assign_splits(sources, SplitSettings(val_fraction=0.2, test_fraction=0.1, seed=4))


def test_split_val_ids_as_the_seed_did(tmp_path: Path) -> None:
    _touch(tmp_path, "Happy_0015.mp4", "Happy_0016.mp4", "Sad_0016.mp4", "Sad_0017.mp4")
    sources, _ = discover(tmp_path)
    splits = assign_splits(sources, SplitSettings(val_ids=("0016", "Sad_0017")))
    assert splits == {"Happy_0015.mp4": "train", "Happy_0016.mp4": "val", "Sad_0016.mp4": "val",
                      "Sad_0017.mp4": "val"}


def test_split_small_classes_keep_a_training_video(tmp_path: Path) -> None:
    _touch(tmp_path, "Happy_0001.mp4", "Sad_0001.mp4", "Sad_0002.mp4", "Sad_0003.mp4")
    sources, _ = discover(tmp_path)
    splits = assign_splits(sources, SplitSettings(val_fraction=0.2, test_fraction=0.2))
    assert splits["Happy_0001.mp4"] == "train"
    assert sorted(splits[f"Sad_000{i}.mp4"] for i in (1, 2, 3)) == ["test", "train", "val"]


def test_dataset_folders_keep_their_splits_and_val_comes_from_train(tmp_path: Path) -> None:
    _touch(tmp_path, *[f"train/happy/{i}.png" for i in range(10)], *[f"test/happy/{i}.png" for i in range(3)])
    sources, _ = discover(tmp_path)
    splits = assign_splits(sources, SplitSettings(val_fraction=0.2, test_fraction=0.3))
    assert all(splits[f"test/happy/{i}.png"] == "test" for i in range(3))
    train_side = [splits[f"train/happy/{i}.png"] for i in range(10)]
    assert train_side.count("val") == 2 and train_side.count("train") == 8


def test_split_file_overrides_folders_fer2013_style(tmp_path: Path) -> None:
    _touch(tmp_path, "train/happy/Training_1.png", "train/happy/Training_2.png",
           "test/happy/PublicTest_3.png", "test/happy/PrivateTest_4.png")
    index = tmp_path / "index.csv"
    index.write_text("path,label,usage\ntrain/happy/Training_1.png,happy,Training\n"
                     "test/happy/PublicTest_3.png,happy,PublicTest\ntest/happy/PrivateTest_4.png,happy,PrivateTest\n")
    sources, _ = discover(tmp_path)
    splits = assign_splits(sources, SplitSettings(split_file=index, val_fraction=0.0))
    assert splits == {"train/happy/Training_1.png": "train", "train/happy/Training_2.png": "train",
                      "test/happy/PublicTest_3.png": "val", "test/happy/PrivateTest_4.png": "test"}


@pytest.mark.parametrize("text, message", [("file,kind\na.png,x\n", "needs a 'path' and a 'split' column"),
                                           ("path,split\na.png,holdout\n", "unknown split 'holdout'"),
                                           ("path,split\na.png,val\nb.png\n", "index.csv:3: b.png has no split")])
def test_split_file_errors_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    index = tmp_path / "index.csv"
    index.write_text(text)
    with pytest.raises(SplitFileError, match=message):
        read_split_file(index)
    with pytest.raises(SplitFileError, match="cannot read"):
        read_split_file(tmp_path / "missing.csv")
