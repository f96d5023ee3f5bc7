"""`predict`, `live` and `export` with tiny real models trained here on real prepared clips."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

import cli
from models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from models.served import load_serving_model
from pipeline.prepare.run import run_prepare
from pipeline.prepare.settings import PrepareConfig
from pipeline.serve.export import ExportError, export_compact, export_onnx
from pipeline.serve.predict import PredictError, clip_windows, predict_file
from pipeline.train.inference import predict_logits, prepare_batch
from pipeline.train.loop import run_train
from pipeline.train.settings import AugmentSettings, TrainConfig
from stacks.dataset import StackDataset
from stacks.io import read_stack
from stacks.manifest import read_manifest
from stacks.resize import resize_stack
from stacks.settings import InputSettings, StackSettings
from stacks.windows import SampledFrame, WindowPlan, windows
from tests.conftest import REPO, SMALL, make_corrupt_file, make_face_clip, make_faceless_clip
from tests.fixtures.stacks import make_stack_set


def _train(data: Path, runs: Path, name: str) -> Path:
    config = TrainConfig(data=data, name=name, runs_dir=runs, backbone="resnet18", input=InputSettings(image_size=32),
                         epochs=1, batch_size=4, lr=1e-3, schedule="constant", augment=AugmentSettings(enabled=False),
                         threads=1, progress=False)
    run_train(config)
    return runs / name


@pytest.fixture(scope="module")
def prepared(dataset: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stacks of the shared clip folder at 64 px, so that serving must also resize them to the model's 32."""
    out = tmp_path_factory.mktemp("stacks64")
    run_prepare(PrepareConfig(source=dataset["root"], out=out, stack=StackSettings(size=64), workers=2,
                              progress=False))
    return out


@pytest.fixture(scope="module")
def stack_run(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(prepared, tmp_path_factory.mktemp("runs"), "stack")


@pytest.fixture(scope="module")
def frame_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-channel model, as trained on face images (FER2013)."""
    data = tmp_path_factory.mktemp("faces")
    make_stack_set(data, classes=("anger", "happy", "sad"), counts={"train": 8, "val": 3}, channels=1, size=32,
                   settings=StackSettings(size=48, on_no_face="center"))
    return _train(data, tmp_path_factory.mktemp("runs"), "frame")


@pytest.fixture(scope="module")
def clips(head: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("journal")
    paths = {"long": root / "long.mp4", "short": root / "short.mp4", "tiny": root / "tiny.mp4",
             "faceless": root / "faceless.mp4", "corrupt": root / "corrupt.mp4", "image": root / "face.png",
             "text": root / "notes.txt"}
    make_face_clip(head, paths["long"], seconds=8.0, size=SMALL, seed=3)
    make_face_clip(head, paths["short"], seconds=1.5, size=SMALL, seed=4)
    make_face_clip(head, paths["tiny"], seconds=0.5, size=SMALL, seed=5)
    make_faceless_clip(paths["faceless"], seconds=2.0, size=SMALL)
    make_corrupt_file(paths["corrupt"])
    cv2.imwrite(str(paths["image"]), cv2.cvtColor(head, cv2.COLOR_RGB2BGR))
    paths["text"].write_text("not a clip\n")
    return paths


@pytest.fixture
def run_cli(capfd: pytest.CaptureFixture):
    """``cli.main`` in this process (no interpreter start-up per call); signal handlers restored after."""
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main([str(a) for a in argv])
        out, err = capfd.readouterr()
        return code, out, err

    yield run
    signal.signal(signal.SIGINT, saved[0])
    signal.signal(signal.SIGTERM, saved[1])


def _grid(n: int, interval: int = 5) -> list[SampledFrame]:
    return [SampledFrame(i * interval, np.zeros((1, 1, 3), np.uint8), []) for i in range(n)]


def test_windows_cover_the_clip_once_decoded() -> None:
    plan = WindowPlan(sequence_length=90, interval=5, stride=45)
    assert (plan.samples, plan.step) == (18, 9)
    starts = [w.start for w in windows(_grid(24), plan)]  # a 4 s clip: 120 frames, 24 sampled
    assert starts == [0, 30]  # the second window ends at the last frame
    assert [w.start for w in windows(_grid(36), plan)] == [0, 45, 90]  # 6 s: regular windows reach the end
    short = list(windows(_grid(7), plan))  # 35 frames: one short window, padded when stacked
    assert len(short) == 1 and len(short[0].frames) == 7
    assert WindowPlan(90, 5, 47).step == 9  # a stride is rounded to whole samples
    with pytest.raises(ValueError, match="stride"):
        WindowPlan(90, 5, 0)


def test_served_stack_is_the_prepared_stack_and_scores_as_in_evaluation(stack_run: Path, prepared: Path,
                                                                        dataset: dict) -> None:
    model = load_serving_model(stack_run)
    assert model.kind == "stack" and model.channels == 18 and model.stack.size == 64
    clip = clip_windows(dataset["root"] / "Happy_0001.mp4", model)
    assert [s.start for s in clip.stacked] == [0, 10]  # 96 frames: samples 0-85 and 10-95
    rows = [r for r in read_manifest(prepared) if r.stack == "train/happy/0001_000.tiff"]
    prepared_stack = read_stack(rows[0].path).array
    np.testing.assert_array_equal(clip.stacked[0].array, resize_stack(prepared_stack, 32))
    # The probabilities `predict` gives equal those of the evaluation path on the prepared stack.
    data = load_checkpoint(stack_run)
    logits, _ = predict_logits(model_from_checkpoint(data), StackDataset(rows, data["model"]["classes"], 32),
                               InputSettings(**data["input"]), torch.device("cpu"))
    expected = torch.softmax(torch.from_numpy(logits), dim=1).numpy()[0]
    np.testing.assert_allclose(model.run(clip.stacked[0].array[None])[0], expected, atol=1e-5)


def test_long_clip_is_classified_window_by_window(frame_run: Path, clips: dict, tmp_path: Path, run_cli) -> None:
    timeline, plot, video = tmp_path / "t.csv", tmp_path / "t.png", tmp_path / "a.mp4"
    code, out, err = run_cli("predict", clips["long"], "--model", frame_run, "--json", "--timeline", timeline,
                             "--plot", plot, "--annotate", video)
    assert code == 0, err
    result = json.loads(out)
    assert set(result["probabilities"]) == {"anger", "happy", "sad"}
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-4
    assert result["face_ratio"] == 1.0 and result["frames"] == 240
    starts = [w["start_s"] for w in result["windows"]]
    assert starts == [0.0, 1.5, 3.0, 4.5, 5.0]  # every half sequence, and one ending at 8 s
    mean = np.mean([list(w["probabilities"].values()) for w in result["windows"]], axis=0)
    np.testing.assert_allclose(list(result["probabilities"].values()), mean, atol=1e-5)
    rows = list(csv.DictReader(open(timeline)))
    assert [float(r["start_s"]) for r in rows] == starts and rows[-1]["end_s"] == "8.000"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 240 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == SMALL[0]
    with av.open(str(video)) as annotated:  # H.264, which browsers play (MPEG-4 part 2 before: they did not)
        stream = annotated.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 30


def test_short_clip_is_padded_and_too_short_is_refused(stack_run: Path, clips: dict) -> None:
    model = load_serving_model(stack_run)
    pred = predict_file(clips["short"], model)  # 45 frames: 9 samples padded to 18 channels
    assert len(pred.windows) == 1 and pred.frames == 45 and pred.face_ratio == 1.0
    from pipeline.serve.outputs import summary_text

    assert f"shorter than the model's {model.stack.sequence_seconds:.1f} s window" in summary_text(pred)  # was silent
    assert "shorter than" not in summary_text(predict_file(clips["long"], model))
    with pytest.raises(PredictError, match=r"0.50 s long; at least 1 s"):
        predict_file(clips["tiny"], model)
    assert len(predict_file(clips["tiny"], model, min_seconds=0.5).windows) == 1


def test_a_file_cut_short_is_said_to_be(frame_run: Path, clips: dict, tmp_path: Path) -> None:
    # Its header at the front (as phones and browsers write MP4), its end lost in a copy: it was answered on
    # what was left with only a note that it is shorter than one window.
    import imageio_ffmpeg

    from pipeline.serve.outputs import summary_text

    whole = tmp_path / "whole.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(clips["long"]), "-c:v",
                    "copy", "-movflags", "+faststart", str(whole)], check=True, timeout=120)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    model = load_serving_model(frame_run)
    pred = predict_file(cut, model)
    assert pred.header_s == 8.0 and pred.duration < 6.0
    assert f"the file looks cut short: its header says 8.0 s, but only {pred.duration:.2f} s" in summary_text(pred)
    assert "cut short" not in summary_text(predict_file(whole, model))


def test_a_clip_past_max_seconds_is_refused_once_decoding_gets_there(stack_run: Path, clips: dict) -> None:
    # The journal's bound: a 10-minute upload was decoded whole (31 s of the server's time) and kept.
    model = load_serving_model(stack_run)
    assert predict_file(clips["long"], model, max_seconds=8.0).duration == 8.0
    with pytest.raises(PredictError, match=r"runs past 3 s, the longest accepted here: trim it, or record a shorter"):
        predict_file(clips["long"], model, max_seconds=3.0)


def test_still_image_with_either_kind_of_model(stack_run: Path, frame_run: Path, clips: dict) -> None:
    for run in (stack_run, frame_run):
        pred = predict_file(clips["image"], load_serving_model(run))
        assert pred.kind == "image" and pred.face_ratio == 1.0 and abs(pred.probs.sum() - 1) < 1e-4


def test_bad_input_is_one_line_and_a_non_zero_exit(frame_run: Path, clips: dict, tmp_path: Path, run_cli) -> None:
    not_ours = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, not_ours)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(Path(frame_run / "best.pt").read_bytes()[:5000])
    fake_onnx = tmp_path / "x.onnx"
    fake_onnx.write_text("not a model\n")
    cases = {
        "no such file": ("predict", tmp_path / "missing.mp4", "--model", frame_run),
        "not a video or image": ("predict", clips["text"], "--model", frame_run),
        "cannot open it": ("predict", clips["corrupt"], "--model", frame_run),
        "no face found in any of the": ("predict", clips["faceless"], "--model", frame_run),
        "not a clip-emotion checkpoint": ("predict", clips["image"], "--model", not_ours),
        "or a truncated one": ("predict", clips["image"], "--model", damaged),
        "not a readable ONNX model": ("predict", clips["image"], "--model", fake_onnx),
        "does not exist": ("predict", clips["image"], "--model", tmp_path / "nothing"),
        # a valid ONNX export was "not a file torch.save wrote ... or a truncated one"
        "is an ONNX export, which predict, live and the journal serve": (
            "evaluate", REPO / "models" / "default" / "ferplus_mobilenetv2_int8.onnx"),
    }
    for expected, argv in cases.items():
        code, out, err = run_cli(*argv)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and expected in err, (argv, err)


def test_bad_input_messages_are_whole_and_say_what_to_do(frame_run: Path, clips: dict, tmp_path: Path,
                                                         run_cli) -> None:
    """Found by trying predict as a new user would: reasons cut mid-path, torch's advice about weights_only,
    a temporary file's name, a PNG written under a .jpg name, and a folder of models refused as a run."""
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("a text file renamed to .mp4\n" * 20)
    pickled = tmp_path / "objects.pt"
    torch.save({"settings": argparse.Namespace(lr=1)}, pickled)
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.pt").write_bytes(Path(frame_run / "best.pt").read_bytes())
    (tmp_path / "a_folder").mkdir()
    blocked = tmp_path / "clips_here"
    (blocked / "predictions.csv").mkdir(parents=True)
    shutil.copyfile(clips["image"], blocked / "face.png")
    edited = {k: v for k, v in load_checkpoint(frame_run).items() if k not in ("path", "format", "version", "stack")}
    save_checkpoint(tmp_path / "edited.pt", edited)
    cases = {
        "empty file (0 bytes)": ("predict", empty, "--model", frame_run),
        # a KeyError traceback from inside serving
        "edited.pt has no stack settings, which every checkpoint train and export write":
            ("predict", clips["image"], "--model", tmp_path / "edited.pt"),
        "(Invalid data found when processing input: a corrupt file or not a video)":
            ("predict", text, "--model", frame_run),
        "holds Python objects besides weights": ("predict", clips["image"], "--model", pickled),
        "is a folder of models, not a run folder (no best.pt or last.pt): pass one of its files (a.pt)":
            ("predict", clips["image"], "--model", models),
        f"--timeline {tmp_path / 'a_folder'} is a folder: give a file name":
            ("predict", clips["image"], "--model", frame_run, "--timeline", tmp_path / "a_folder"),
        "the plot is written as PNG; use a .png file name":
            ("predict", clips["long"], "--model", frame_run, "--plot", tmp_path / "plot.jpg"),
        "is an ONNX model, which onnxruntime runs on the CPU": ("predict", clips["image"], "--device", "cuda"),
        # it said the ONNX model could not use the device, as if "gpu" were one
        "unknown --device 'gpu': use auto, cpu, cuda, cuda:N or mps": ("predict", clips["image"], "--device", "gpu"),
        # a folder of clips was classified first, then "cannot write ...: File exists"
        f"--out {empty / 'answers.csv'}: {empty} is a file, not a folder":
            ("predict", clips["image"].parent, "--model", frame_run, "--out", empty / "answers.csv"),
        # it said only "no test stacks in the stack folder"
        "no test stacks in the stack folder (prepare with --test-fraction > 0, or pass --data":
            ("evaluate", frame_run, "--split", "test"),
        # options that do not apply to the input were ignored without a word
        "--timeline and --plot are for one clip; a folder's answers go into one table":
            ("predict", clips["image"].parent, "--model", frame_run, "--timeline", tmp_path / "t.csv", "--plot",
             tmp_path / "p.png"),
        "--out is for a folder of clips":
            ("predict", clips["short"], "--model", frame_run, "--out", tmp_path / "o.csv"),
        "--min-seconds must be >= 0 (got -1)": ("predict", clips["short"], "--model", frame_run, "--min-seconds", "-1"),
        # the default output too, found before the folder's clips are classified
        f"--out {blocked / 'predictions.csv'} is a folder: give a file name":
            ("predict", blocked, "--model", frame_run),
    }
    for expected, argv in cases.items():
        code, out, err = run_cli(*argv)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and expected in err, (argv, err)
        assert "weights_only" not in err and ".partial-" not in err and "Errno" not in err, err
    assert not (tmp_path / "plot.jpg").exists()


def test_evaluate_shows_progress_through_the_model_pass(frame_run: Path, run_cli, tmp_path: Path) -> None:
    # After "load val" the model pass said nothing (a minute on FER+ test).
    code, out, err = run_cli("evaluate", frame_run, "--out", tmp_path / "ev")
    assert code == 0 and "evaluate val" in err and "batch" in err and "accuracy" in out
    assert f"written to {tmp_path / 'ev'}: metrics.json" in out  # a checkpoint's folder got them without a word
    code, _, err = run_cli("evaluate", frame_run, "--out", tmp_path / "ev", "--no-progress")
    assert code == 0 and "evaluate val" not in err


def test_a_clip_whose_emotion_changes_says_so(frame_run: Path, clips: dict) -> None:
    """One mean answer hides a clip that goes from one emotion to another: the summary lists the stretches."""
    from pipeline.serve.outputs import emotion_spans, summary_text

    pred = predict_file(clips["long"], load_serving_model(frame_run))
    classes = pred.classes
    for i, window in enumerate(pred.windows):  # the first half of the windows one class, the rest another
        window.probs = np.eye(len(classes))[0 if i < len(pred.windows) // 2 else 1].astype(np.float32)
    spans = emotion_spans(pred)
    half = len(pred.windows) // 2
    assert [label for label, _, _ in spans] == [classes[0], classes[1]]
    assert spans[0][1] == pred.windows[0].start_s and spans[-1][2] == pred.windows[-1].end_s
    centres = [(w.start_s + w.end_s) / 2 for w in pred.windows]
    assert spans[0][2] == spans[1][1] == pytest.approx((centres[half - 1] + centres[half]) / 2)
    assert f"over time: {classes[0]} {spans[0][1]:.1f}-{spans[0][2]:.1f} s, {classes[1]}" in summary_text(pred)
    pred.windows.reverse()  # the order they come in does not matter
    assert emotion_spans(pred) == spans
    for window in pred.windows:
        window.probs = np.eye(len(classes))[2].astype(np.float32)
    assert len(emotion_spans(pred)) == 1 and "over time" not in summary_text(pred)

    # A stretch without a face: no span covers it, and the same class on both sides is no change.
    ordered = sorted(pred.windows, key=lambda w: w.start_s)
    before, after = ordered[:1], ordered[-1:]  # the windows between them had no face
    assert after[0].start_s > before[0].end_s, [(w.start_s, w.end_s) for w in ordered]
    pred.windows = before + after
    assert emotion_spans(pred) == [(classes[2], before[0].start_s, before[-1].end_s),
                                   (classes[2], after[0].start_s, after[-1].end_s)]
    assert "over time" not in summary_text(pred)
    for window in after:
        window.probs = np.eye(len(classes))[1].astype(np.float32)
    assert f"over time: {classes[2]} {before[0].start_s:.1f}-{before[-1].end_s:.1f} s, {classes[1]} " \
        f"{after[0].start_s:.1f}-" in summary_text(pred)


def test_two_faces_in_a_clip_are_said(frame_run: Path, head: np.ndarray, tmp_path: Path) -> None:
    """The answer is one face's: with two in view the summary says so (it said nothing)."""
    from pipeline.serve.outputs import summary_text

    face = cv2.cvtColor(cv2.resize(head, (200, 200)), cv2.COLOR_RGB2BGR)
    frame = np.full((240, 480, 3), 90, np.uint8)
    frame[20:220, 20:220], frame[20:220, 260:460] = face, face[:, ::-1]
    model = load_serving_model(frame_run)
    two = predict_file(_still_clip(tmp_path / "two.mp4", frame), model)
    assert two.faces_seen == 2 and two.to_dict()["faces_seen"] == 2
    assert "2 faces in view together: the answer follows the one seen largest and longest" in summary_text(two)
    one = predict_file(_still_clip(tmp_path / "one.mp4", frame[:, :240]), model)
    assert one.faces_seen == 1 and "faces found" not in summary_text(one)
    from pipeline.serve.predict import faces_in_view

    # a false second face in one sampled frame is no crowd; two frames with two faces are
    assert faces_in_view([1, 1, 2, 1]) == 1 and faces_in_view([1, 2, 2]) == 2 and faces_in_view([3, 2, 1]) == 2
    assert faces_in_view([]) == 1 and faces_in_view([0]) == 1


def _still_clip(path: Path, frame: np.ndarray, seconds: float = 2.0) -> Path:
    frame = np.ascontiguousarray(frame)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (frame.shape[1], frame.shape[0]))
    for _ in range(round(seconds * 30)):
        writer.write(frame)
    writer.release()
    return path


def test_a_folder_gives_one_row_per_file(frame_run: Path, clips: dict, tmp_path: Path, run_cli) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    for key in ("short", "corrupt", "image"):
        (folder / clips[key].name).write_bytes(clips[key].read_bytes())
    code, out, err = run_cli("predict", folder, "--model", frame_run)
    assert code == 0, err
    rows = {Path(r["file"]).name: r for r in csv.DictReader(open(folder / "predictions.csv"))}
    assert set(rows) == {"short.mp4", "corrupt.mp4", "face.png"}
    assert rows["corrupt.mp4"]["error"] and not rows["corrupt.mp4"]["label"]
    assert not rows["corrupt.mp4"]["error"].startswith(str(folder))  # the file column names the file already
    assert rows["short.mp4"]["label"] in ("anger", "happy", "sad") and not rows["short.mp4"]["error"]
    assert "2 of 3 files classified" in out
    assert "short.mp4: " in out and "corrupt.mp4: skipped" in out


def test_ctrl_c_in_a_folder_keeps_the_answers_so_far(frame_run: Path, clips: dict, tmp_path: Path) -> None:
    # The whole table was lost: it was written only after the last file.
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        (folder / f"clip_{i:02d}.mp4").symlink_to(clips["short"])
    (folder / "predictions.csv").write_text("an earlier run's whole table\n")
    proc = subprocess.Popen([sys.executable, "cli.py", "predict", str(folder), "--model", str(frame_run)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = proc.stdout.readline()  # the first answer, printed as it comes
    assert first.startswith(str(folder / "clip_00.mp4") + ": "), (first, proc.stderr.read() if not first else "")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    done = int(re.search(r"interrupted after (\d+) of 40 files; the table of those is in .*predictions.partial.csv",
                         err).group(1))
    rows = list(csv.DictReader(open(folder / "predictions.partial.csv")))
    assert 1 <= done < 40 and len(rows) == done and all(r["label"] for r in rows)
    assert (folder / "predictions.csv").read_text() == "an earlier run's whole table\n"


@pytest.mark.parametrize("which", ["stack", "frame"])
def test_onnx_export_gives_the_torch_probabilities(which: str, stack_run: Path, frame_run: Path, clips: dict,
                                                   tmp_path: Path) -> None:
    run = stack_run if which == "stack" else frame_run
    onnx_path = tmp_path / "model.onnx"
    export_onnx(run, onnx_path)
    torch_pred = predict_file(clips["long"], load_serving_model(run))
    onnx_model = load_serving_model(onnx_path)
    assert onnx_model.backend == "onnx" and onnx_model.kind == which
    onnx_pred = predict_file(clips["long"], onnx_model)
    assert np.abs(torch_pred.probs - onnx_pred.probs).max() < 1e-4
    for a, b in zip(torch_pred.windows, onnx_pred.windows):
        assert np.abs(a.probs - b.probs).max() < 1e-4


def test_compact_checkpoint_is_smaller_and_predicts_almost_the_same(stack_run: Path, dataset: dict,
                                                                      tmp_path: Path) -> None:
    compact = tmp_path / "compact.pt"
    export_compact(stack_run, compact)
    assert compact.stat().st_size < 0.3 * (stack_run / "best.pt").stat().st_size
    clip = dataset["root"] / "Sad_0004.mp4"
    full, small = predict_file(clip, load_serving_model(stack_run)), predict_file(clip, load_serving_model(compact))
    assert np.abs(full.probs - small.probs).max() < 0.02
    assert load_checkpoint(compact)["kind"] == "stack"


@pytest.mark.slow
def test_live_from_a_file_prints_rolling_predictions(frame_run: Path, clips: dict) -> None:
    done = subprocess.run([sys.executable, "cli.py", "live", "--source", str(clips["long"]), "--no-window",
                           "--every", "30", "--model", str(frame_run)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("t=")]
    # The first full window ends at frame 85 (2.83 s); then one every 30 frames up to frame 235.
    assert len(lines) == 6 and lines[0].startswith("t=   2.83s")
    assert all(any(c in line for c in ("anger", "happy", "sad")) for line in lines)


def test_int8_export_of_a_stack_model_is_refused_before_any_work(stack_run: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    # onnxruntime failed after the float export: "Got invalid dimensions for input: stacks ... Expected: 6".
    import cli

    faces = tmp_path / "faces"
    faces.mkdir()
    cv2.imwrite(str(faces / "a.png"), np.full((48, 48), 128, np.uint8))
    out = tmp_path / "m.onnx"
    assert cli.main(["export", str(stack_run), "--onnx", str(out), "--int8", str(faces)]) == 1
    err = capsys.readouterr().err.strip()
    assert "--int8 calibrates on single face images, so it is for frame models" in err and "\n" not in err
    assert not out.exists()


def test_export_never_replaces_a_runs_checkpoint_and_checks_the_suffixes(frame_run: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    # `export --compact runs/x/best.pt runs/x` wrote the compact file over the run's own best.pt, and
    # `--onnx m.pt` wrote an ONNX file that predict then read as a damaged checkpoint.
    import cli

    stamps = {p: p.stat().st_mtime_ns for p in frame_run.glob("*.pt")}
    refused = {("--compact", frame_run / "best.pt"): "is the checkpoint being exported",
               ("--compact", frame_run / "last.pt"): "would replace a run's own checkpoint",
               ("--onnx", tmp_path / "m.pt"): "--onnx writes a .onnx file",
               ("--compact", tmp_path / "m.onnx"): "--compact writes a .pt or .pth file"}
    for (flag, out), message in refused.items():
        assert cli.main(["export", str(frame_run), flag, str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    onnx_path = tmp_path / "ok.onnx"  # a good --onnx is not written when --compact is refused
    assert cli.main(["export", str(frame_run), "--onnx", str(onnx_path), "--compact", str(tmp_path / "c.onnx")]) == 1
    assert not onnx_path.exists() and not (tmp_path / "m.pt").exists() and not (tmp_path / "m.onnx").exists()
    assert {p: p.stat().st_mtime_ns for p in frame_run.glob("*.pt")} == stamps
    # a caller's temporary name is its own business (benchmarks/logit_offsets.py exports through atomic_write)
    export_onnx(frame_run, tmp_path / "m.onnx.partial-1-2")
    with pytest.raises(ExportError, match="is the checkpoint being exported"):
        export_compact(frame_run, frame_run / "best.pt")


def test_live_on_a_file_shorter_than_a_window_answers_as_predict_does(frame_run: Path, clips: dict) -> None:
    # live said "the stream ended before one full window" where predict classified the 1.5 s clip.
    def live(clip: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "cli.py", "live", "--source", str(clip), "--no-window", "--model",
                               str(frame_run)], cwd=REPO, capture_output=True, text=True, timeout=300)

    done = live(clips["short"])
    lines = [line for line in done.stdout.splitlines() if line.startswith("t=")]
    pred = predict_file(clips["short"], load_serving_model(frame_run))
    assert done.returncode == 0 and len(lines) == 1, (done.stdout, done.stderr)
    assert lines[0].split()[2:4] == [pred.label, f"{pred.confidence:.2f}"], (lines, pred.label, pred.confidence)
    done = live(clips["tiny"])  # 0.5 s: what predict refuses gives no answer here either, said the same way
    assert done.returncode == 1 and "no prediction: the file ended before 1 s, the least a clip needs" in done.stdout
    done = live(clips["image"])  # it said "the stream ended before one full window (3.0 s)"
    assert done.returncode == 1
    assert "is a still image; live reads a video (`predict` classifies an image)" in done.stderr


def test_live_without_the_camera_is_one_line(frame_run: Path) -> None:
    # OpenCV's own "[ERROR:0@0.5] global obsensor_uvc_stream_channel.cpp:163 ..." came first.
    done = subprocess.run([sys.executable, "cli.py", "live", "--no-window", "--camera", "63", "--model",
                           str(frame_run)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["error: camera 63 cannot be opened (no camera, or in use); "
                                                "try --source FILE"]


def test_live_on_a_faceless_stream_says_no_window_had_a_face(frame_run: Path, tmp_path: Path) -> None:
    empty_room = make_faceless_clip(tmp_path / "room.mp4", seconds=5.0, size=SMALL)
    done = subprocess.run([sys.executable, "cli.py", "live", "--source", str(empty_room), "--no-window",
                           "--every", "30", "--model", str(frame_run)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    lines = done.stdout.strip().splitlines()
    windows = sum(line.startswith("t=") for line in lines)
    # it said "no face, or the stream ended before one full window (3.0 s) after 0.7 s", 0.7 s of wall time
    assert done.returncode == 1 and windows >= 1
    assert lines[-1] == f"no prediction: no face in any of the {windows} windows", lines


def test_live_with_a_window_but_no_display_says_so(frame_run: Path, clips: dict) -> None:
    # OpenCV's Qt aborted the whole process here (exit 134, Qt's "Reinstalling the application may fix this").
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, "cli.py", "live", "--source", str(clips["long"]), "--model",
                           str(frame_run)], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "error: no display to open a window on: add --no-window", done.stderr


def test_serving_crops_with_the_margin_training_crops_really_had(stack_run: Path, tmp_path: Path) -> None:
    assert load_serving_model(stack_run).stack.margin == 0.1  # video crops: the edge never cut them short
    data = load_checkpoint(stack_run)
    assert data["framing"] == {"margin": 0.1}
    data["framing"] = {"margin": 0.046}  # as measured on FER2013's pre-cropped faces
    save_checkpoint(tmp_path / "tight.pt", {k: v for k, v in data.items() if k not in ("path", "format", "version")})
    assert load_serving_model(tmp_path / "tight.pt").stack.margin == 0.046


def test_face_share_counts_the_frames_of_faceless_windows(frame_run: Path, clips: dict, tmp_path: Path) -> None:
    """A face for the first 3 s, then 3 s of an empty room: half the sampled frames show the face."""
    mixed = tmp_path / "mixed.avi"
    writer = cv2.VideoWriter(str(mixed), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, SMALL)
    for part in (clips["long"], clips["faceless"]):
        cap = cv2.VideoCapture(str(part))
        for _ in range(90 if part == clips["long"] else 60):
            writer.write(cap.read()[1])
        cap.release()
    for _ in range(30):  # the faceless clip is 2 s: a blank third second
        writer.write(np.full((SMALL[1], SMALL[0], 3), 90, np.uint8))
    writer.release()
    pred = predict_file(mixed, load_serving_model(frame_run))
    assert pred.frames == 180 and pred.face_ratio == pytest.approx(0.5, abs=0.06)
    assert [w.start for w in pred.windows] == [0, 45]  # the window from 90 s on has no face: no answer
    annotated = tmp_path / "mixed_annotated.avi"
    from pipeline.serve.annotate import write_annotated

    assert write_annotated(pred, annotated) == 180
    with av.open(str(annotated)) as written:
        assert written.streams.video[0].codec_context.name == "mjpeg" and written.streams.video[0].frames == 180
    source = tmp_path / "odd_source.mkv"  # lossless FFV1 keeps odd sides (an H.264 or MPEG-4 writer rounds them)
    with av.open(str(source), "w") as clip:
        stream = clip.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 81, 59, "bgr0"
        for _ in range(60):
            clip.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((59, 81, 3), np.uint8), format="bgr24")))
        clip.mux(stream.encode())
    odd = tmp_path / "odd.mkv"  # 4:2:0 needs even sides: an odd-sized clip gets one black pixel more
    assert write_annotated(dataclasses.replace(pred, source=str(source)), odd) == 60
    with av.open(str(odd)) as written:
        assert (written.streams.video[0].width, written.streams.video[0].height) == (82, 60)


def test_an_annotate_encoder_that_fails_is_one_message_and_leaves_no_file(frame_run: Path, clips: dict,
                                                                           tmp_path: Path, monkeypatch) -> None:
    """The real PyAV refusing a codec it does not have, as a build without libx264 would."""
    from pipeline.serve import annotate

    pred = predict_file(clips["short"], load_serving_model(frame_run))
    monkeypatch.setitem(annotate.CODECS, ".mp4", "no_such_encoder")
    with pytest.raises(PredictError, match=r"--annotate .*a\.mp4: this PyAV has no no_such_encoder encoder"):
        annotate.write_annotated(pred, tmp_path / "a.mp4")
    assert list(tmp_path.iterdir()) == []


def test_more_bad_input_through_the_cli(frame_run: Path, clips: dict, tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli("predict", clips["short"], "--model", frame_run, "--stride", "0")
    assert code == 2 and "--stride must be at least 1" in err
    code, _, err = run_cli("predict", clips["short"], "--model", frame_run, "--timeline", clips["text"] / "t.csv")
    assert code == 1 and f"{clips['text']} is a file, not a folder" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("predict", clips["short"], "--model", frame_run, "--annotate", clips["short"])
    assert code == 1 and "is the input clip" in err
    code, _, err = run_cli("predict", clips["image"], "--model", frame_run, "--annotate", tmp_path / "a.mp4")
    assert code == 1 and "needs a single video" in err
    code, _, err = run_cli("export", frame_run, "--onnx", clips["text"] / "m.onnx")
    assert code == 1 and err.startswith("error: cannot write")
    import onnx

    plain = tmp_path / "plain.onnx"
    export_onnx(frame_run, plain)
    graph = onnx.load(str(plain))
    del graph.metadata_props[:]
    onnx.save(graph, str(plain))
    code, _, err = run_cli("predict", clips["short"], "--model", plain)
    assert code == 1 and "not one exported by `cli.py export`" in err


def test_checkpoints_from_before_kind_and_framing_still_serve(frame_run: Path, clips: dict, tmp_path: Path) -> None:
    data = load_checkpoint(frame_run)
    old = {k: v for k, v in data.items() if k not in ("path", "format", "version", "kind", "framing")}
    save_checkpoint(tmp_path / "old.pt", old)
    model = load_serving_model(tmp_path / "old.pt")
    assert model.kind == "frame" and model.stack.margin == 0.1  # 1 channel; synthetic stacks record no margin
    assert predict_file(clips["short"], model).face_ratio == 1.0


def test_compact_weights_are_within_half_a_step_of_the_float_ones(frame_run: Path) -> None:
    from models.compact import compact_state, expand_state

    state = load_checkpoint(frame_run)["state_dict"]
    packed = compact_state(state)
    back = expand_state(packed)
    assert back.keys() == state.keys()
    for name, tensor in state.items():
        if name + ".__scale__" in packed:
            step = packed[name + ".__scale__"].reshape([-1] + [1] * (tensor.dim() - 1))
            assert packed[name + ".__int8__"].dtype == torch.int8
            assert ((back[name] - tensor).abs() <= step / 2 + 1e-7).all(), name
        else:
            assert torch.equal(back[name], tensor), name


def test_mirror_export_averages_each_face_with_its_mirror_image(frame_run: Path, clips: dict, tmp_path: Path,
                                                                 run_cli) -> None:
    from pipeline.train.data import load_split, read_run_data
    from pipeline.train.evaluate import evaluate_run
    from pipeline.train.inference import class_probabilities

    mirrored, onnx_path = tmp_path / "mirror.pt", tmp_path / "mirror.onnx"
    code, _, _ = run_cli("export", frame_run, "--compact", mirrored, "--onnx", onnx_path, "--mirror")
    assert code == 0 and load_checkpoint(mirrored)["input"]["mirror"] is True
    plain = load_checkpoint(frame_run)
    assert not InputSettings(**plain["input"]).mirror  # a run itself is served unmirrored

    # The served probabilities are the mean of the face's and its mirror image's.
    served = load_serving_model(mirrored)
    assert served.inputs.mirror
    net = model_from_checkpoint(load_checkpoint(mirrored)).eval()
    stacks = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 1, 32, 32), dtype=np.uint8))
    inputs = InputSettings(**{**plain["input"], "mirror": False})
    with torch.no_grad():
        one = class_probabilities(net, prepare_batch(stacks, inputs, torch.device("cpu")), inputs)
        other = class_probabilities(net, prepare_batch(stacks.flip(3), inputs, torch.device("cpu")), inputs)
    expected = ((one + other) / 2).numpy()
    assert np.abs(served.run(stacks.numpy()) - expected).max() < 1e-5
    assert np.abs(served.run(stacks.numpy()) - served.run(stacks.flip(3).numpy())).max() < 1e-5
    assert np.abs(served.run(stacks.numpy()) - one.numpy()).max() > 1e-4  # it does change the answer

    # ONNX carries the mirror in its graph, and evaluate scores the checkpoint as it is served.
    by_onnx = predict_file(clips["long"], load_serving_model(onnx_path))
    assert np.abs(by_onnx.probs - predict_file(clips["long"], served).probs).max() < 1e-4
    metrics = evaluate_run(mirrored, split="val", progress=False, out=tmp_path / "eval")
    assert (tmp_path / "eval" / "metrics.json").is_file() and not (tmp_path / "metrics.json").exists()
    run_data = read_run_data(Path(plain["train"]["data"]), classes=list(plain["model"]["classes"]))
    val = load_split(run_data, "val", 32, None, False)
    probs = served.run(np.asarray(val.images[:]))
    assert metrics["accuracy"] == pytest.approx(float((probs.argmax(1) == val.labels).mean()))
    assert metrics["loss"] == pytest.approx(float(-np.log(probs[np.arange(len(val)), val.labels]).mean()), rel=1e-4)


def test_a_frame_model_classifies_each_face_of_overlapping_windows_once(frame_run: Path, clips: dict) -> None:
    from pipeline.serve.predict import classify_stacks

    model = load_serving_model(frame_run)
    stacked = clip_windows(clips["long"], model).stacked
    assert len(stacked) > 2
    every_face = np.concatenate([s.array for s in stacked])[:, None]
    rows = model.run(every_face)
    expected, start = [], 0
    for s in stacked:  # the windows' means over all their faces, each face run as often as it appears
        expected.append(rows[start:start + len(s.array)].mean(axis=0))
        start += len(s.array)
    seen: list[int] = []
    real_run = model.run
    model.run = lambda batch: (seen.append(len(batch)), real_run(batch))[1]
    got = classify_stacks(model, stacked)
    assert sum(seen) == len({i for s in stacked for i in s.indices}) < len(every_face)
    assert all(np.abs(a - b).max() < 1e-5 for a, b in zip(got, expected))


def test_predict_names_the_model_and_its_offsets(frame_run: Path, clips: dict, tmp_path: Path, run_cli) -> None:
    # The README said "`predict` names them in its model line"; no such line was printed.
    shifted = tmp_path / "shifted.pt"
    assert run_cli("export", frame_run, "--compact", shifted, "--logit-offset", "sad=-1.5")[0] == 0
    code, out, _ = run_cli("predict", clips["image"], "--model", shifted)
    assert code == 0 and out.strip().splitlines()[-1] == f"  model: {load_serving_model(shifted).describe()}"
    assert out.strip().endswith(", logit offsets sad -1.5")
    code, out, _ = run_cli("predict", clips["image"], "--model", shifted, "--json")
    assert json.loads(out)["model_description"].endswith(", logit offsets sad -1.5")


def test_a_logit_offset_moves_that_class_in_every_served_form(frame_run: Path, tmp_path: Path, run_cli) -> None:
    """`export --logit-offset sad=-1.5`: the exported network's sad logit is the run's minus 1.5, the others
    unchanged, in the compact checkpoint and in ONNX; the offsets are recorded and add up; a class the
    model does not have or a malformed value is a one-line error."""
    shifted, onnx_path, twice = tmp_path / "shifted.pt", tmp_path / "shifted.onnx", tmp_path / "twice.pt"
    code, _, err = run_cli("export", frame_run, "--compact", shifted, "--onnx", onnx_path, "--logit-offset", "sad=-1.5")
    assert code == 0, err
    data = load_checkpoint(shifted)
    classes = list(data["model"]["classes"])
    assert data["model"]["logit_offsets"] == {"sad": -1.5}
    stacks = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (4, 1, 32, 32), dtype=np.uint8))
    inputs = InputSettings(**data["input"])
    with torch.no_grad():
        x = prepare_batch(stacks, inputs, torch.device("cpu"))
        before = model_from_checkpoint(load_checkpoint(frame_run)).eval()(x)
        after = model_from_checkpoint(data).eval()(x)
    step = torch.zeros(len(classes))
    step[classes.index("sad")] = -1.5
    assert torch.allclose(after - before, step.expand_as(after), atol=0.03)  # int8 weights: small noise only
    probs = load_serving_model(onnx_path).run(stacks.numpy())
    assert np.abs(probs - torch.softmax(after, 1).numpy()).max() < 0.02
    assert load_serving_model(onnx_path).describe().endswith(", logit offsets sad -1.5")
    assert "offsets" not in load_serving_model(frame_run).describe()
    assert load_serving_model(onnx_path).run(stacks.numpy())[:, classes.index("sad")].mean() < \
        load_serving_model(frame_run).run(stacks.numpy())[:, classes.index("sad")].mean()

    assert run_cli("export", shifted, "--compact", twice, "--logit-offset", "sad=0.5",
                   "--logit-offset", "happy=0.25")[0] == 0
    assert load_checkpoint(twice)["model"]["logit_offsets"] == {"sad": -1.0, "happy": 0.25}
    code, _, err = run_cli("export", frame_run, "--compact", twice, "--logit-offset", "contempt=-1")
    assert code == 1 and "no class contempt" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exited:
        cli.main(["export", str(frame_run), "--compact", str(twice), "--logit-offset", "sad"])
    assert exited.value.code == 2
