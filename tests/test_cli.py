"""The command line as a user meets it: help, errors without tracebacks, interruption and resume."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from stacks import read_manifest, read_stack
from stacks.atomic import TMP_MARK
from tests.conftest import REPO, SMALL
from tests.fixtures.clips import make_face_clip


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_help_names_every_option() -> None:
    top = cli("--help")
    assert top.returncode == 0 and "prepare" in top.stdout and "make-clips" in top.stdout
    prep = cli("prepare", "--help")
    for flag in ("--source", "--out", "--interval", "--sequence-length", "--min-length", "--margin", "--size",
                 "--detector", "--on-no-face", "--workers", "--val-ids", "--val-fraction", "--test-fraction",
                 "--seed", "--force"):
        assert flag in prep.stdout
    assert "(default: 5)" in prep.stdout


def test_a_help_example_too_long_for_the_terminal_goes_on_further_in() -> None:
    # The continuation started in the examples' own column, where it read as another command.
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run([sys.executable, str(REPO / "cli.py"), "train", "--help"], capture_output=True, text=True,
                          env=env, timeout=300)
    lines = done.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  python cli.py train --data"))
    assert lines[first + 1].startswith("      --") and all(len(line) <= 80 for line in lines[first:first + 2])


@pytest.mark.parametrize("args,code,message", [
    (["prepare", "--source", "/nonexistent/clips"], 1, "does not exist"),
    (["prepare", "--source", ".", "--interval", "0"], 2, "--interval must be"),
    (["prepare", "--source", ".", "--val-fraction", "0.7", "--test-fraction", "0.5"], 2, "leave something"),
    (["make-clips", "--photos", "/nonexistent/photos"], 2, "does not exist"),
    (["make-clips", "--width", "641"], 2, "--width must be even for H.264 (got 641)"),
    (["make-clips", "--per-label", "0", "--seconds", "-1"], 2,  # "wrote 0 files", exit 0
     "--per-label must be > 0 (got 0); --seconds must be > 0 (got -1)"),
])
def test_expected_problems_are_one_line_errors(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    result = cli(*args, "--out", str(tmp_path / "out"))
    assert result.returncode == code
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")


@pytest.mark.parametrize("command", ["prepare", "make-clips"])
def test_an_output_path_through_a_file_is_one_line(command: str, tmp_path: Path) -> None:
    # Both printed a traceback (NotADirectoryError); a read-only folder did the same.
    blocker = tmp_path / "photo.jpg"
    blocker.write_bytes(b"a file, not a folder")
    src = tmp_path / "src"
    make_face_clip(np.full((64, 64, 3), 128, np.uint8), src / "Happy_0001.mp4", seconds=1.0, size=SMALL)
    photos = tmp_path / "photos" / "happy"
    photos.mkdir(parents=True)
    cv2.imwrite(str(photos / "a.jpg"), np.full((64, 64, 3), 128, np.uint8))
    args = (["--source", str(src), "--no-progress"] if command == "prepare"
            else ["--photos", str(photos.parent), "--per-label", "1"])
    result = cli(command, *args, "--out", str(blocker / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and str(blocker) in result.stderr, result.stderr


def test_a_class_or_split_lost_to_a_typo_is_said(tmp_path: Path) -> None:
    """Each of these ran to exit 0 with nothing said: a class gone, a map never used, no validation split
    (which `train` then refused with advice the user had already followed)."""
    src = tmp_path / "src"
    for i, label in enumerate(("Happy", "Sad"), start=1):
        make_face_clip(np.full((64, 64, 3), 128, np.uint8), src / f"{label}_000{i}.mp4", seconds=3.2, size=SMALL)
    expected = {
        ("--labels", "Hapy,Sad"): "warning: --labels Hapy matched no file (labels found: happy, sad)",
        ("--label-map", "hapy=joy"): "warning: --label-map names label(s) no file has: hapy (labels found: happy, sad)",
        ("--val-ids", "9999"): "warning: no validation stacks: --val-ids 9999 matched no usable file",
        ("--val-fraction", "0.5"): "warning: no validation stacks: no label has enough usable clips for "
                                   "--val-fraction 0.5",
    }
    for args, warning in expected.items():
        result = cli("prepare", "--source", str(src), "--out", str(tmp_path / "out"), "--no-progress", "--force",
                     "--on-no-face", "center", *args)
        assert result.returncode == 0 and warning in result.stdout, (args, result.stdout, result.stderr)
    result = cli("prepare", "--source", str(src), "--out", str(tmp_path / "out"), "--no-progress", "--force",
                 "--on-no-face", "center", "--labels", "happy,sad", "--val-ids", "0002")
    assert "warning" not in result.stdout, result.stdout


def test_no_split_warning_for_a_folder_with_nothing_to_train_on() -> None:
    from pipeline.prepare.run import label_and_split_warnings

    # the README's FER+ test folder: test stacks only, the default --val-fraction 0.2 (it warned "add clips")
    report = {"stacks": {"test": {"happy": 3}}, "split_settings": {"val_ids": [], "val_fraction": 0.2}, "labels": {}}
    assert label_and_split_warnings(report) == []
    report["stacks"]["train"] = {"happy": 3}
    assert label_and_split_warnings(report)[0].startswith("no validation stacks: no label has enough usable clips")
    report["split_settings"]["by"] = "actor"
    assert label_and_split_warnings(report)[0].startswith("no validation stacks: too few people")


def test_labels_that_name_no_emotion_are_questioned() -> None:
    from pipeline.prepare.run import label_and_split_warnings

    # `prepare --source ../shared/data/realvideo` made classes "wolfganglanger", "single", "multi" in silence
    report = {"stacks": {"test": {}}, "labels": {"labels_kept": ["face", "multi", "single", "wolfganglanger"]}}
    assert label_and_split_warnings(report)[0].startswith("no label names an emotion (face, multi, single, "
                                                          "wolfganglanger): a label is the first part of a file name")
    for own in (["happy", "smirk"], ["happy_face", "frown"], ["smile", "scared"]):  # a set of one's own words
        report["labels"]["labels_kept"] = own
        assert label_and_split_warnings(report) == [], own
    report["labels"]["labels_kept"] = ["0", "1", "2"]  # AffectNet's, RAF-DB's class codes
    assert "--label-map 0=angry" in label_and_split_warnings(report)[0]


def test_nothing_produced_fails_with_the_reasons(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Happy_0001.mp4").write_bytes(b"garbage")
    result = cli("prepare", "--source", str(src), "--out", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 1 and "no stack was produced" in result.stderr and "unreadable: 1" in result.stderr
    (src / "Happy_0001.mp4").unlink()
    (src / "myclip.mp4").write_bytes(b"garbage")
    result = cli("prepare", "--source", str(src), "--out", str(tmp_path / "out"), "--no-progress")
    # the fix was only in the report's JSON
    assert "e.g. myclip.mp4: no label: name it <Label>_<id>.<ext> or put it in a <label>/ folder" in result.stderr


def test_prepare_prints_the_summary(dataset: dict, tmp_path: Path) -> None:
    result = cli("prepare", "--source", str(dataset["root"]), "--out", str(tmp_path / "out"), "--size", "32",
                 "--no-progress", "--workers", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "interval 5, 18 channels" in out and "frames/s" in out
    assert "train" in out and "val" in out and "happy" in out and "sad" in out
    assert "unreadable: 1" in out and "too short: 1" in out and "no face: 1" in out
    # every clip's leftover end was listed as a skip ("skipped: trailing frames: 6, ..."); it is said apart
    skipped = next(line for line in out.splitlines() if line.strip().startswith("skipped:"))
    assert "trailing" not in skipped and "clip ends shorter than a sequence, left out:" in out
    assert "W0000" not in result.stderr and "moov atom" not in result.stderr  # native noise kept out


@pytest.fixture
def long_source(head: np.ndarray, tmp_path: Path) -> Path:
    """Ten 12-second clips (4 sequences each): long enough to interrupt a run in the middle."""
    src = tmp_path / "src"
    first = make_face_clip(head, src / "Happy_0000.mp4", seconds=12, size=SMALL).path
    for i in range(1, 10):
        shutil.copy(first, src / f"Happy_{i:04d}.mp4")
    return src


def _start(src: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "prepare", "--source", str(src), "--out", str(out), "--workers", "1",
         "--detector", "mesh", "--no-progress", "--val-fraction", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_stacks(proc: subprocess.Popen, out: Path, n: int) -> None:
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*.tiff"))) < n:
        assert proc.poll() is None, "prepare ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _assert_every_stack_complete(out: Path) -> None:
    for path in out.rglob("*.tiff"):
        with tifffile.TiffFile(path) as tif:  # a truncated file fails here
            assert tif.asarray().shape == (18, 224, 224)
        assert read_stack(path).meta["frame_indices"]


def test_killed_run_leaves_no_partial_stack_and_rerun_completes(long_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _start(long_source, out)
    _wait_for_stacks(proc, out, 3)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait()
    _assert_every_stack_complete(out)
    rerun = cli("prepare", "--source", str(long_source), "--out", str(out), "--workers", "2", "--detector", "mesh",
                "--no-progress", "--val-fraction", "0")
    assert rerun.returncode == 0, rerun.stderr
    rows = read_manifest(out)
    assert len(rows) == 40
    assert not any(TMP_MARK in p.name for p in out.rglob("*"))
    _assert_every_stack_complete(out)


def test_ctrl_c_saves_what_is_done_and_says_how_to_continue(long_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _start(long_source, out)
    _wait_for_stacks(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted" in stderr and "run the same command again" in stderr and "Traceback" not in stderr
    done = read_manifest(out)
    assert 0 < len(done) < 40
    rerun = cli("prepare", "--source", str(long_source), "--out", str(out), "--detector", "mesh", "--no-progress",
                "--val-fraction", "0")
    assert rerun.returncode == 0
    assert len(read_manifest(out)) == 40
    assert f"reused from earlier runs: {len(done) // 4}" in rerun.stdout


@pytest.mark.skipif(os.environ.get("CI_SKIP_DEMO") == "1", reason="demo clips disabled")
def test_make_clips_writes_a_preparable_folder(tmp_path: Path) -> None:
    result = cli("make-clips", "--out", str(tmp_path / "clips"), "--per-label", "2", "--seconds", "3.1",
                 "--width", "320", "--height", "240", "--with-bad-files")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == [
        "Happy_0001.mp4", "Happy_0002.mp4", "Happy_0901.mp4", "Happy_0902.mp4", "Happy_0903.mp4"]
    assert "make-clips: 100%" in result.stderr and "2/2" in result.stderr  # a long run said nothing until the end
    import av

    with av.open(str(tmp_path / "clips" / "Happy_0001.mp4")) as clip:  # it was mp4v, which no browser plays
        assert clip.streams.video[0].codec_context.name == "h264"


def test_ctrl_c_in_make_clips_leaves_no_half_written_clip(tmp_path: Path) -> None:
    # The clip being written stayed under its final name, truncated; prepare then counted it as a bad file.
    out = tmp_path / "clips"
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "make-clips", "--out", str(out), "--per-label",
                             "1", "--seconds", "60", "--width", "320", "--height", "240"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    clip, deadline = out / "Happy_0001.mp4", time.monotonic() + 120
    while not (clip.is_file() and clip.stat().st_size > 0):  # the encoder has written frames
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_ctrl_c_during_training_then_resume_finishes_the_run(tmp_path: Path) -> None:
    from models.checkpoint import load_checkpoint
    from tests.fixtures.stacks import make_stack_set

    data, runs = tmp_path / "stacks", tmp_path / "runs"
    make_stack_set(data, counts={"train": 16, "val": 4}, channels=4, size=32)
    args = ["train", "--data", str(data), "--backbone", "mobilenetv3_small", "--image-size", "32", "--epochs", "40",
            "--batch-size", "8", "--runs-dir", str(runs), "--name", "r", "--no-progress", "--threads", "1"]
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (runs / "r" / "last.pt").is_file():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "holds epoch" in err and "--resume" in err and "Traceback" not in err
    done = load_checkpoint(runs / "r" / "last.pt")["epoch"]
    assert 1 <= done < 40
    assert cli(*args).returncode == 1  # not overwritten without --resume/--overwrite
    resumed = cli(*[a if a != "40" else str(done + 1) for a in args], "--resume")  # --epochs may change
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(runs / "r" / "last.pt")["epoch"] == done + 1
    assert (runs / "r" / "metrics.json").is_file()


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    """`python cli.py models | head -1`: the reader is gone; no traceback, the exit status of SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "cli.py", "models"], cwd=REPO, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_logging_setup_prints_plain_lines_info_on_stdout_warnings_on_stderr(capsys: pytest.CaptureFixture) -> None:
    """What `cli.py` sets up for the stages' loggers: the lines users always saw, on the streams they were on."""
    from tqdm import tqdm

    from pipeline.console import setup_logging

    setup_logging()
    setup_logging()  # again (cli.main in a test, a reused grid worker): still one line per record
    logging.getLogger("pipeline.train.loop").info("epoch   1/3  train loss 0.6931")
    logging.getLogger("timm.models._builder").info("a library's chatter")  # others: warnings only
    bar = tqdm(total=2, desc="Happy", file=sys.stderr)
    logging.getLogger("scrapers.scrape").warning("Pexels: 429 Too Many Requests, retrying in 1 s")
    logging.getLogger("some.library").warning("a library's warning")
    bar.close()
    out, err = capsys.readouterr()
    assert out == "epoch   1/3  train loss 0.6931\n"
    # Each warning is a line of its own: the progress bar is wiped first and drawn again after it.
    for line in ("Pexels: 429 Too Many Requests, retrying in 1 s", "a library's warning"):
        assert re.search(rf"(^|[\r\n]){re.escape(line)}\n", err), err
        assert err.count(line) == 1


def test_a_stage_interrupted_or_failing_is_one_line_and_its_exit_code(capsys: pytest.CaptureFixture) -> None:
    """prepare, train and grid share this: 130 when interrupted (rerun to continue), 1 for the stage's error."""
    from pipeline.console import run_stage

    class Interrupted(Exception):
        pass

    class Failed(Exception):
        pass

    def stage(exc: Exception) -> Callable[[], int]:
        def run() -> int:
            raise exc
        return run

    kinds = {"interrupted": Interrupted, "failed": (Failed, OSError)}
    assert run_stage(lambda: 41, lambda result: result - 41, **kinds) == 0
    assert run_stage(stage(Interrupted("interrupted in epoch 3: --resume")), print, **kinds) == 130
    assert capsys.readouterr().err == "error: interrupted in epoch 3: --resume\n"
    assert run_stage(stage(Failed("no manifest.csv in data/x")), print, **kinds) == 1
    assert capsys.readouterr().err == "error: no manifest.csv in data/x\n"
    assert run_stage(stage(PermissionError(13, "Permission denied", "grids/g")), print, **kinds) == 1
    assert capsys.readouterr().err == "error: cannot write or read grids/g: Permission denied\n"
    with pytest.raises(ValueError):  # anything else is a bug: its traceback is shown
        run_stage(stage(ValueError("bug")), print, **kinds)


def test_prepare_on_still_images_does_not_name_an_interval(tmp_path: Path) -> None:
    # A face-image set's bar read "prepare interval 5", which means nothing to one image.
    for label in ("happy", "sad"):
        (tmp_path / "faces" / label).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "faces" / label / "a.png"), np.full((48, 48), 128, np.uint8))
    result = cli("prepare", "--source", str(tmp_path / "faces"), "--out", str(tmp_path / "out"), "--size", "32",
                 "--on-no-face", "center")
    assert result.returncode == 0, result.stderr
    assert "prepare images" in result.stderr and "prepare interval" not in result.stderr
