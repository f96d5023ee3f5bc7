"""`prepare` end to end on real clips: shapes, face boxes, splits, reruns, bad files, images."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.prepare.run import REPORT_NAME, PrepareError, run_prepare
from pipeline.prepare.settings import PrepareConfig, SplitSettings
from stacks import read_manifest, read_stack
from stacks.faces import Box
from stacks.settings import StackSettings
from tests.conftest import SMALL, shared_faces
from tests.fixtures.clips import ASTRONAUT_LANDMARKS, load_photo, make_face_clip


def _prepare(source: Path, out: Path, **stack: object) -> object:
    split = stack.pop("split", SplitSettings())
    return run_prepare(PrepareConfig(source=source, out=out, stack=StackSettings(**stack), split=split,
                                     workers=2, progress=False))


@pytest.fixture(scope="module")
def prepared(dataset: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The default settings (interval 5, 224 px) over the shared clip folder, run once."""
    out = tmp_path_factory.mktemp("stacks")
    result = _prepare(dataset["root"], out)
    return {"out": out, "result": result, **dataset}


def test_default_stacks_are_18x224x224_uint8(prepared: dict) -> None:
    rows = read_manifest(prepared["out"])
    assert {r.source for r in rows} == {f"{label}_{i:04d}.mp4" for i, label in
                                        enumerate(["Happy"] * 3 + ["Sad"] * 3, start=1)}
    for row in rows:
        stack = read_stack(row.path)
        assert stack.array.shape == (18, 224, 224) and stack.array.dtype == np.uint8
        assert row.channels == 18 and row.face_ratio == 1.0
        assert stack.meta["frame_indices"] == list(range(0, 90, 5))
        assert stack.meta["settings"]["interval"] == 5 and stack.meta["fps"] == pytest.approx(30)
        assert stack.meta["source"] == row.source and stack.meta["label"] == row.label
        assert Path(row.stack).parts[:2] == (row.split, row.label)


def test_face_box_lies_on_the_face_in_every_sampled_frame(prepared: dict) -> None:
    for row in read_manifest(prepared["out"]):
        truth = prepared["truths"][row.source]
        meta = read_stack(row.path).meta
        flipped = row.label == "sad"  # the Sad clips show the mirrored photo
        width = 320  # astronaut_head() width, for mirroring landmark x
        for (x0, y0, x1, y1), index in zip(meta["boxes"], meta["frame_indices"]):
            for x, y in ASTRONAUT_LANDMARKS.values():
                px, py = truth.where(width - 1 - x if flipped else x, y)[index]
                assert x0 < px < x1 and y0 < py < y1, (row.source, index)
            # the whole 300 px photo is ~144-160 px tall on screen; the face crop is smaller
            assert 50 < x1 - x0 < 130


def test_no_source_video_in_two_splits(prepared: dict) -> None:
    splits_of: dict[str, set[str]] = {}
    for row in read_manifest(prepared["out"]):
        splits_of.setdefault(row.source, set()).add(row.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {row.split for row in read_manifest(prepared["out"])} == {"train", "val"}


def test_bad_files_are_reported_and_skipped(prepared: dict) -> None:
    report = json.loads((prepared["out"] / REPORT_NAME).read_text())
    reasons = {(item["source"], item["reason"]) for item in report["skipped"] if item["chunk"] is None}
    assert ("Neutral_0901.mp4", "no face") in reasons
    # one detail, not joined to the trailing frames' and repeated per sequence
    faceless = next(item for item in report["skipped"] if item["source"] == "Neutral_0901.mp4")
    assert faceless["detail"] == "no face found in any sampled frame"
    assert ("Happy_0902.mp4", "too short") in reasons
    assert ("Sad_0903.mp4", "unreadable") in reasons
    assert ("nolabel.mp4", "not usable") in reasons
    assert not any("README" in item["source"] for item in report["skipped"])
    assert report["stacks_total"] == 6 and report["stacks"]["train"]["happy"] >= 1
    assert not any(row.source in {"Neutral_0901.mp4", "Happy_0902.mp4", "Sad_0903.mp4"}
                   for row in read_manifest(prepared["out"]))


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.is_file() and p.name != REPORT_NAME}


def test_rerun_writes_nothing_and_force_rebuilds(dataset: dict, tmp_path: Path) -> None:
    first = _prepare(dataset["root"], tmp_path, size=32)
    before = _snapshot(tmp_path)
    second = _prepare(dataset["root"], tmp_path, size=32)
    assert _snapshot(tmp_path) == before
    # 6 clips with stacks + the faceless one: its "no face" outcome is remembered, not re-decoded
    assert second.report["processed_this_run"] == 0 and second.report["reused_from_earlier_runs"] == 7
    assert [r.stack for r in second.rows] == [r.stack for r in first.rows]
    forced = run_prepare(PrepareConfig(source=dataset["root"], out=tmp_path, stack=StackSettings(size=32),
                                       workers=1, force=True, progress=False))
    assert forced.report["processed_this_run"] == 7


def test_changed_settings_rebuild_and_drop_stale_stacks(dataset: dict, tmp_path: Path) -> None:
    _prepare(dataset["root"], tmp_path, size=32, sequence_length=48, min_length=40, interval=8)
    many = {p.name for p in tmp_path.rglob("*.tiff")}
    assert any(name.endswith("_001.tiff") for name in many)  # 96 frames -> two 48-frame sequences
    _prepare(dataset["root"], tmp_path, size=32)  # 90-frame sequences: one per clip
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.tiff"))
    assert files == sorted(r.stack for r in read_manifest(tmp_path))
    assert all(read_stack(tmp_path / f).array.shape == (18, 32, 32) for f in files)


def test_long_clip_gives_several_sequences_and_pads_the_last(head: np.ndarray, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_face_clip(head, src / "Happy_0001.mp4", seconds=170 / 30, size=SMALL)  # 90 + 80 frames
    make_face_clip(head, src / "Happy_0002.mp4", seconds=100 / 30, size=SMALL)  # 90 + 10 frames
    result = _prepare(src, tmp_path / "out", size=32, split=SplitSettings(val_fraction=0))
    rows = {r.stack: r for r in result.rows}
    assert sorted(rows) == ["train/happy/0001_000.tiff", "train/happy/0001_001.tiff", "train/happy/0002_000.tiff"]
    last = read_stack(rows["train/happy/0001_001.tiff"].path)
    assert last.meta["frames"] == 80 and last.meta["padded"] == 2
    assert rows["train/happy/0001_001.tiff"].face_ratio == 1.0  # padded channels are not missed faces
    assert last.meta["frame_indices"][-3:] == [165, 165, 165]
    assert np.array_equal(last.array[-1], last.array[-3])  # padding repeats the last face
    trailing = [s for s in result.report["skipped"] if s["reason"] == "trailing frames"]
    assert trailing == [{"source": "Happy_0002.mp4", "chunk": 1, "reason": "trailing frames",
                         "detail": "10 frames (container's count; not decoded) < --min-length 75"}]
    # the 10-frame tail that can never make a sequence is not decoded: 170 + 90 frames, not 270
    assert result.report["frames_decoded_this_run"] == 260


@pytest.mark.slow
def test_containers_and_image_folders(head: np.ndarray, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for ext in (".avi", ".mkv", ".mov"):
        make_face_clip(head, src / "happy" / f"clip{ext}", seconds=3.0, size=SMALL)
    (src / "sad").mkdir()
    for i in range(3):
        cv2.imwrite(str(src / "sad" / f"img{i}.png"), cv2.cvtColor(head, cv2.COLOR_RGB2BGR))
    (src / "sad" / "broken.jpg").write_bytes(b"not a jpeg")
    result = _prepare(src, tmp_path / "out", size=48, split=SplitSettings(val_fraction=0))
    shapes = {r.source: read_stack(r.path).array.shape for r in result.rows}
    assert shapes == {"happy/clip.avi": (18, 48, 48), "happy/clip.mkv": (18, 48, 48), "happy/clip.mov": (18, 48, 48),
                      "sad/img0.png": (1, 48, 48), "sad/img1.png": (1, 48, 48), "sad/img2.png": (1, 48, 48)}
    # same video id in one folder: the stems keep their extension instead of overwriting each other
    assert len({r.stack for r in result.rows}) == 6
    assert any(s["source"] == "sad/broken.jpg" and s["reason"] == "unreadable" for s in result.report["skipped"])


def test_on_no_face_center_keeps_faceless_clips(dataset: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(dataset["root"] / "Neutral_0901.mp4", src)
    with pytest.raises(PrepareError, match="no stack was produced"):
        _prepare(src, tmp_path / "skip", size=32)
    result = _prepare(src, tmp_path / "center", size=32, on_no_face="center")
    (row,) = result.rows
    assert row.face_ratio == 0.0 and read_stack(row.path).meta["boxes"][0] == [40, 0, 280, 240]


def test_mesh_detector_gives_the_same_crop(dataset: dict, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(dataset["root"] / "Happy_0001.mp4", src)
    det = _prepare(src, tmp_path / "det", size=32, split=SplitSettings(val_fraction=0)).rows[0]
    mesh = _prepare(src, tmp_path / "mesh", size=32, detector="mesh", split=SplitSettings(val_fraction=0)).rows[0]
    pairs = zip(read_stack(det.path).meta["boxes"], read_stack(mesh.path).meta["boxes"])
    ious = [Box(*a).iou(Box(*b)) for a, b in pairs]
    assert np.median(ious) > 0.8


@pytest.mark.shared_data
def test_real_face_photos_as_clips(tmp_path: Path) -> None:
    faces = shared_faces()
    src = tmp_path / "src"
    photos = [sorted((faces / label).glob("*.jpg"))[0] for label in ("anger", "happy", "surprise")]
    for i, photo in enumerate(photos):
        make_face_clip(load_photo(photo), src / f"{photo.parent.name.capitalize()}_{i:04d}.mp4", seconds=3.0,
                       size=(640, 480), seed=i)
    result = _prepare(src, tmp_path / "out", size=64, split=SplitSettings(val_fraction=0))
    assert len(result.rows) == 3 and all(r.face_ratio >= 0.9 for r in result.rows)


def test_fer_style_image_dataset(tmp_path: Path) -> None:
    """48x48 grey face images in train/ and test/ folders: kept splits, 1-channel stacks."""
    from skimage import data

    face = cv2.resize(np.ascontiguousarray(data.astronaut()[40:230, 150:300]), (48, 48), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    for split, n in (("train", 5), ("test", 2)):
        folder = tmp_path / "fer" / split / "happy"
        folder.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(folder / f"{i}.png"), grey)
    result = _prepare(tmp_path / "fer", tmp_path / "out", size=48, on_no_face="center",
                      split=SplitSettings(val_fraction=0.2))
    splits = sorted(r.split for r in result.rows)
    assert splits == ["test", "test", "train", "train", "train", "train", "val"]
    assert all(read_stack(r.path).array.shape == (1, 48, 48) for r in result.rows)


def test_missing_and_empty_source_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="does not exist"):
        _prepare(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="holds no videos or images"):
        _prepare(tmp_path / "empty", tmp_path / "out")
    assert not os.path.exists(tmp_path / "out" / "manifest.csv")


def test_stack_maker_says_too_short_without_decoding_a_hopeless_clip(head: np.ndarray, tmp_path: Path) -> None:
    from stacks.faces import DetectionFinder
    from stacks.maker import SourceSkipped, video_stacks

    clip = make_face_clip(head, tmp_path / "short.mp4", seconds=1.0, size=SMALL).path
    with pytest.raises(SourceSkipped) as info:
        video_stacks(clip, StackSettings(), DetectionFinder())
    assert info.value.reason == "too short" and "30 frames" in info.value.detail
