"""`train` and `evaluate` on generated stacks: tiny real runs (timm resnet18, 32 px, 2-3 epochs)."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, model_from_checkpoint
from pipeline.train.augment import augment_batch
from pipeline.train.data import read_run_data
from pipeline.train.evaluate import evaluate_run
from pipeline.train.inference import predict_logits
from pipeline.train.loop import Trainer, TrainError, TrainInterrupted, run_train
from pipeline.train.loop import log as train_log
from pipeline.train.settings import AugmentSettings, TrainConfig
from stacks.dataset import StackDataset
from stacks.io import read_stack, write_stack
from stacks.manifest import ManifestRow, read_manifest, write_manifest
from stacks.settings import InputSettings
from tests.conftest import REPO
from tests.fixtures.stacks import make_stack_set

SEED_HISTORY = ["epoch", "time_seconds", "train_acc", "train_loss", "val_acc", "val_loss", "learning_rate"]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stacks")
    make_stack_set(out, counts={"train": 24, "val": 8, "test": 8}, channels=4, size=32)
    return out


@pytest.fixture(scope="module")
def image_stacks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1-channel stacks, as `prepare` makes from an image dataset such as FER2013."""
    out = tmp_path_factory.mktemp("images")
    make_stack_set(out, classes=("anger", "happy", "sad", "shock"), counts={"train": 16, "val": 4}, channels=1,
                   size=32, seed=5)
    return out


def config(data: Path, runs: Path, name: str, **overrides) -> TrainConfig:
    base = dict(data=data, name=name, runs_dir=runs, backbone="resnet18", input=InputSettings(image_size=32),
                epochs=3, batch_size=8, lr=1e-3, schedule="constant", augment=AugmentSettings(enabled=False),
                threads=1, progress=False)
    return TrainConfig(**{**base, **overrides})


def _history_values(run_dir: Path) -> list[dict]:
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    return [{k: v for k, v in r.items() if k != "time_seconds"} for r in rows]


@pytest.fixture(scope="module")
def finished(stacks: Path, tmp_path_factory: pytest.TempPathFactory):
    runs = tmp_path_factory.mktemp("runs")
    return run_train(config(stacks, runs, "base"))


def test_loss_goes_down_and_accuracy_beats_chance(finished) -> None:
    history = finished.state.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert finished.metrics["accuracy"] > 0.6  # chance is 1/3


def test_artefacts_hold_what_a_later_user_needs(finished) -> None:
    run = finished.run_dir
    for name in ("best.pt", "last.pt", "history.csv", "metrics.json", "classification_report.csv",
                 "confusion_matrix.png", "curves.png", "config.json"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    with open(run / "history.csv") as fh:
        assert next(csv.reader(fh))[: len(SEED_HISTORY)] == SEED_HISTORY
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"accuracy", "uar", "war", "macro_f1", "per_class", "confusion_matrix"} <= set(metrics)
    assert set(metrics["per_class"]["happy"]) == {"precision", "recall", "f1", "support"}
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["samples"] == 24
    report = (run / "classification_report.csv").read_text()
    assert report.startswith("class,precision,recall,f1,support") and "macro avg" in report
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["model"]["classes"] == ["anger", "happy", "sad"] and ckpt["model"]["backbone"] == "resnet18"
    assert ckpt["model"]["in_chans"] == 4
    assert ckpt["input"] == {"image_size": 32, "mean": 0.5, "std": 0.5, "mirror": False}  # a run serves unmirrored
    assert ckpt["stack"]["interval"] == 5 and ckpt["stack"]["size"] == 32
    assert {"torch", "timm", "python"} <= set(ckpt["versions"])
    last = load_checkpoint(run / "last.pt")
    assert {"optimizer", "scheduler", "rng", "loop"} <= set(last) and last["epoch"] == 3


def test_checkpoint_loads_back_and_predicts_the_same(finished, stacks: Path) -> None:
    ckpt = load_checkpoint(finished.run_dir)
    data = read_run_data(stacks)
    val = StackDataset(data.rows["val"], data.classes, 32)
    inputs = InputSettings(**ckpt["input"])
    first, _ = predict_logits(model_from_checkpoint(ckpt), val, inputs, torch.device("cpu"))
    again, _ = predict_logits(model_from_checkpoint(load_checkpoint(finished.run_dir / "best.pt")), val, inputs,
                              torch.device("cpu"))
    np.testing.assert_array_equal(first, again)
    metrics = json.loads((finished.run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(float((first.argmax(1) == val.labels).mean()))


@pytest.mark.slow
def test_same_seed_same_metrics_with_augmentation(stacks: Path, tmp_path: Path) -> None:
    aug = AugmentSettings()
    run_train(config(stacks, tmp_path, "a", epochs=2, augment=aug, seed=7))
    run_train(config(stacks, tmp_path, "b", epochs=2, augment=aug, seed=7))
    run_train(config(stacks, tmp_path, "c", epochs=2, augment=aug, seed=8))
    assert _history_values(tmp_path / "a") == _history_values(tmp_path / "b")
    assert _history_values(tmp_path / "a") != _history_values(tmp_path / "c")


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(stacks: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    aug = AugmentSettings()
    straight = run_train(config(stacks, tmp_path, "straight", augment=aug, schedule="cosine"))

    class StopAfterEpoch2(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("epoch   2/"):
                raise KeyboardInterrupt  # as Ctrl-C would, right after epoch 2 was saved

    stop = StopAfterEpoch2()
    caplog.set_level(logging.INFO, logger="pipeline.train")  # the epoch lines are INFO records
    train_log.addHandler(stop)
    try:
        with pytest.raises(TrainInterrupted, match="interrupted in epoch 3; .* holds epoch 2: .* --resume"):
            Trainer(config(stacks, tmp_path, "cut", augment=aug, schedule="cosine")).fit()
    finally:
        train_log.removeHandler(stop)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed = run_train(config(stacks, tmp_path, "cut", augment=aug, schedule="cosine", resume=True))
    assert _history_values(tmp_path / "cut") == _history_values(tmp_path / "straight")
    assert resumed.metrics["accuracy"] == straight.metrics["accuracy"]


def test_an_existing_run_is_not_overwritten_silently(finished, stacks: Path) -> None:
    again = config(stacks, finished.run_dir.parent, finished.run_dir.name)
    with pytest.raises(TrainError, match="already holds a run: --resume"):
        Trainer(again)
    with pytest.raises(TrainError, match="--resume: .* does not exist"):
        Trainer(config(stacks, finished.run_dir.parent, "never-ran", resume=True))


def test_face_image_model_initialises_a_clip_model(image_stacks: Path, stacks: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    images = run_train(config(image_stacks, tmp_path, "faces", epochs=1))
    caplog.set_level(logging.INFO, logger="pipeline.train")
    caplog.clear()
    run_train(config(stacks, tmp_path, "clips", epochs=1, init=images.run_dir))
    assert "first conv 1->4 channels; new head" in caplog.messages[0]
    image_conv = load_checkpoint(images.run_dir)["state_dict"]["backbone.conv1.weight"]
    trainer = Trainer(config(stacks, tmp_path, "clips2", epochs=1, init=images.run_dir))
    assert torch.allclose(trainer.model.backbone.conv1.weight, image_conv.repeat(1, 4, 1, 1) / 4)


def test_init_from_another_architecture_is_refused(finished, stacks: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="is a resnet18 model but this run builds mobilenetv3_small"):
        Trainer(config(stacks, tmp_path, "x", backbone="mobilenetv3_small", init=finished.run_dir))


def test_evaluate_any_split_writes_its_own_files(finished) -> None:
    metrics = evaluate_run(finished.run_dir, "test", progress=False)
    assert metrics["samples"] == 24 and metrics["split"] == "test"
    for name in ("metrics_test.json", "classification_report_test.csv", "confusion_matrix_test.png"):
        assert (finished.run_dir / name).is_file()
    val = evaluate_run(finished.run_dir, "val", progress=False)
    assert val["accuracy"] == finished.metrics["accuracy"]


# -- bad input: one clear error before any training ---------------------------------------------------

def _copy_stacks(src: Path, dst: Path) -> list:
    rows = read_manifest(src)
    moved = []
    for row in rows:
        stack = read_stack(row.path)
        write_stack(dst / row.stack, stack.array, stack.meta)
        moved.append(dataclasses.replace(row, root=str(dst)))
    write_manifest(dst, moved)
    return moved


def test_bad_stack_folders_fail_before_training(stacks: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(TrainError, match="no manifest.csv in"):
        Trainer(config(tmp_path / "nothing", runs, "a"))
    empty = tmp_path / "empty"
    write_manifest(empty, [])
    with pytest.raises(TrainError, match="lists no stacks"):
        Trainer(config(empty, runs, "b"))

    orphan = tmp_path / "orphan"
    rows = _copy_stacks(stacks, orphan)
    write_manifest(orphan, [r for r in rows if not (r.label == "sad" and r.split == "train")])
    with pytest.raises(TrainError, match="class sad has validation/test stacks but no training samples"):
        Trainer(config(orphan, runs, "c"))

    mixed = tmp_path / "mixed"
    rows = _copy_stacks(stacks, mixed)
    odd = rows[0]
    write_stack(odd.path, np.zeros((9, 32, 32), np.uint8), read_stack(odd.path).meta)
    write_manifest(mixed, [dataclasses.replace(odd, channels=9)] + rows[1:])
    with pytest.raises(TrainError, match=r"mixes stacks of \[4, 9\] channels"):
        Trainer(config(mixed, runs, "d"))

    sizes = tmp_path / "sizes"
    rows = _copy_stacks(stacks, sizes)
    write_stack(rows[-1].path, np.zeros((4, 40, 40), np.uint8), read_stack(rows[-1].path).meta)
    with pytest.raises(TrainError, match="stacks of different sizes"):
        Trainer(config(sizes, runs, "e"))


@pytest.mark.slow
def test_cli_train_errors_are_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "cli.py", "train", "--data", str(tmp_path / "none"), "--backbone",
                           "resnet18", "--runs-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("error: no manifest.csv in")
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "cli.py", "train", "--backbone", "vgg"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "unknown backbone 'vgg'; choose one of" in proc.stderr


@pytest.mark.slow
def test_cli_train_prints_the_progress_lines(stacks: Path, tmp_path: Path) -> None:
    """The loop reports through `logging`; `cli.py` shows those records as plain lines on stdout."""
    proc = subprocess.run([sys.executable, "cli.py", "train", "--data", str(stacks), "--runs-dir", str(tmp_path),
                           "--name", "cli", "--backbone", "resnet18", "--image-size", "32", "--epochs", "2",
                           "--batch-size", "8", "--no-augment", "--threads", "1", "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("resnet18: 4 channels, 3 classes (anger, happy, sad), 72 train / 24 val stacks at "
                               "32px on cpu"), proc.stdout
    assert lines[1].startswith("epoch   1/2 ") and lines[2].startswith("epoch   2/2 ")
    assert lines[3].startswith("best accuracy ") and " at epoch " in lines[3]
    assert lines[4].startswith("val accuracy ") and len(lines) == 5
    assert "epoch" not in proc.stderr


# -- augmentation --------------------------------------------------------------------------------------

def test_augmentation_is_one_transform_for_all_channels_and_fresh_each_epoch() -> None:
    rng = np.random.default_rng(0)
    frame = torch.from_numpy(rng.random((6, 1, 32, 32), dtype=np.float32))
    batch = frame.repeat(1, 5, 1, 1)  # every channel of a stack identical
    out = augment_batch(batch, AugmentSettings(blur=1.0, erase=1.0), torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and 0.0 <= out.min() and out.max() <= 1.0
    assert torch.equal(out, out[:, :1].expand_as(out))  # still identical across channels
    assert not torch.allclose(out, batch)
    same = augment_batch(batch, AugmentSettings(blur=1.0, erase=1.0), torch.Generator().manual_seed(1))
    other = augment_batch(batch, AugmentSettings(blur=1.0, erase=1.0), torch.Generator().manual_seed(2))
    assert torch.equal(out, same) and not torch.allclose(out, other)


def test_dataset_keeps_uint8_and_reuses_a_disk_cache(stacks: Path, tmp_path: Path) -> None:
    data = read_run_data(stacks)
    ds = StackDataset(data.rows["train"], data.classes, 24, cache_dir=tmp_path)
    images, labels = ds[[0, 5, 9]]
    assert images.dtype == torch.uint8 and images.shape == (3, 4, 24, 24) and labels.dtype == torch.int64
    assert ds.nbytes == 72 * 4 * 24 * 24
    cached = list(tmp_path.glob("stacks_*.npy"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    again = StackDataset(data.rows["train"], data.classes, 24, cache_dir=tmp_path)
    assert cached[0].stat().st_mtime_ns == mtime
    assert torch.equal(again[[0, 5, 9]][0], images)


def test_dataset_resizes_stacks_of_any_channel_count(tmp_path: Path) -> None:
    """Regression: OpenCV's area resize refused more than 4 channels at once (18-channel clip stacks)."""
    import cv2

    rows = make_stack_set(tmp_path, counts={"train": 1}, channels=18, size=40)
    ds = StackDataset(rows, ["anger", "happy", "sad"], 24)
    original = read_stack(rows[0].path).array
    assert ds.images.shape == (3, 18, 24, 24)
    for c in (0, 17):
        np.testing.assert_array_equal(ds.images[0, c], cv2.resize(original[c], (24, 24), interpolation=cv2.INTER_AREA))


def test_resume_refuses_changed_settings_and_overwrite_keeps_the_old_run_until_checks_pass(
        finished, stacks: Path, tmp_path: Path) -> None:
    runs, name = finished.run_dir.parent, finished.run_dir.name
    with pytest.raises(TrainError, match=r"--resume with different settings \(--lr 0.001 -> 0.01"):
        Trainer(config(stacks, runs, name, resume=True, lr=1e-2))
    # named by their flags, not as the whole nested settings ("input {'image_size': 32, ...} -> {...}")
    with pytest.raises(TrainError, match=r"settings \(--no-augment True -> False, --image-size 32 -> 48\)"):
        Trainer(config(stacks, runs, name, resume=True, input=InputSettings(image_size=48),
                       augment=AugmentSettings()))
    with pytest.raises(TrainError, match=r"settings \(--image-size 32 -> 48, input.mirror False -> True\)"):
        Trainer(config(stacks, runs, name, resume=True, input=InputSettings(image_size=48, mirror=True)))
    with pytest.raises(TrainError, match="no manifest.csv"):
        Trainer(config(tmp_path / "typo", runs, name, overwrite=True))
    assert (finished.run_dir / "best.pt").is_file() and (finished.run_dir / "metrics.json").is_file()


def test_weights_file_sets_its_normalisation_and_init_keeps_the_parents(finished, stacks: Path, tmp_path: Path) -> None:
    import timm

    path = tmp_path / "resnet18_imagenet_layout.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    trainer = Trainer(config(stacks, tmp_path, "w", weights=path))
    assert (trainer.inputs.mean, trainer.inputs.std) == (0.449, 0.226)  # grey = mean of ImageNet's RGB stats
    child = Trainer(config(stacks, tmp_path, "child", init=finished.run_dir))
    assert child.start_note.endswith("same channels; head kept)") and child.inputs.mean == 0.5
    ours = tmp_path / "ours.pth"  # our checkpoint's weights given as --weights: backbone part is used
    torch.save(load_checkpoint(finished.run_dir)["state_dict"], ours)
    assert "backbone from --weights" in Trainer(config(stacks, tmp_path, "o", weights=ours)).start_note


def test_evaluate_a_folder_without_training_split(finished, stacks: Path, tmp_path: Path) -> None:
    only_test = tmp_path / "only_test"
    rows = _copy_stacks(stacks, only_test)
    write_manifest(only_test, [r for r in rows if r.split == "test"])
    metrics = evaluate_run(finished.run_dir, "test", data=only_test, progress=False)
    assert metrics["samples"] == 24


def test_evaluate_on_other_label_names_or_the_wrong_kind_of_stacks_says_what_to_do(finished, stacks: Path,
                                                                                   image_stacks: Path,
                                                                                   tmp_path: Path) -> None:
    # "has labels ['angry'] that the model was not trained on" with no way out; a frame model on clip stacks
    # was told to use "stacks made with the run's interval", which a frame model has not.
    other = tmp_path / "other"  # the same emotions named as another dataset names them
    make_stack_set(other, classes=("angry", "happy", "sad"), counts={"test": 2}, channels=4, size=32)
    with pytest.raises(TrainError, match=r"labels \['angry'\] .* --label-map angry=anger$"):
        evaluate_run(finished.run_dir, "test", data=other, progress=False)
    calm = tmp_path / "calm"  # every unknown label in the map, not only the close ones
    make_stack_set(calm, classes=("angry", "calm", "happy"), counts={"test": 2}, channels=4, size=32)
    with pytest.raises(TrainError, match=r"--label-map angry=anger,calm=CLASS \(CLASS: one of the model's classes, "
                                         r"or drop\)$"):
        evaluate_run(finished.run_dir, "test", data=calm, progress=False)
    frame = run_train(config(image_stacks, tmp_path, "frame", epochs=1))
    with pytest.raises(TrainError, match="a frame model is evaluated on face-image stacks"):
        evaluate_run(frame.run_dir, "test", data=stacks, progress=False)  # 4-channel clip stacks


@pytest.mark.parametrize("bad, message", [({"scale": 1.0}, "--scale must be in"), ({"flip": 2.0}, "--flip must be")])
def test_augmentation_settings_are_checked(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AugmentSettings(**bad)


def test_train_settings_are_checked(stacks: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--batch-size must be >= 2"):
        config(stacks, tmp_path, "x", batch_size=1)
    with pytest.raises(ValueError, match="--weight-decay must be between"):
        config(stacks, tmp_path, "x", weight_decay=-1.0)
    # --name "" put the run into runs/ itself, and --overwrite then deleted every run there.
    for bad in ("", ".", "..", "a/b"):
        with pytest.raises(ValueError, match="--name must be a plain folder name"):
            config(stacks, tmp_path, bad, overwrite=True)


def test_precision_choice() -> None:
    from pipeline.train.parts import cpu_has_native_bf16, use_bf16

    cpu = torch.device("cpu")
    assert not use_bf16("fp32", torch.device("cuda"), "resnet18")
    assert use_bf16("bf16", cpu, "mobilenetv3_small")
    assert not use_bf16("auto", cpu, "mobilenetv3_large")  # depthwise convolutions are slower in bf16 on CPU
    # resnet18 follows the CPU's bf16 flags (read from /proc/cpuinfo: tests/test_cpu_bf16.py checks the reading)
    assert use_bf16("auto", cpu, "resnet18") is cpu_has_native_bf16()
    assert use_bf16("auto", torch.device("cuda"), "mobilenetv3_large")


def test_missing_start_weights_and_a_wrong_interval_fail_before_the_stacks_load(stacks: Path, tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture) -> None:
    # --weights/--init that do not exist were found after every stack had loaded (41 s on FER2013); here the
    # stacks past the first cannot load at all, so only a check made before loading says the right thing.
    broken = tmp_path / "broken"
    rows = _copy_stacks(stacks, broken)
    kept = next(row for row in rows if row.split == "train")  # read when the folder is checked
    for row in rows:
        if row is not kept:
            (broken / row.stack).unlink()
    for flag, value in (("weights", tmp_path / "nope.pth"), ("init", tmp_path / "nope_run")):
        with pytest.raises(TrainError, match=f"--{flag} .*nope.*: no such file or run folder"):
            Trainer(config(broken, tmp_path / "runs", flag, **{flag: value}))
    # --interval 10 picked a folder of interval-5 stacks and trained on them without a word
    import cli

    (broken / "prepare_report.json").write_text(json.dumps({"settings": {"interval": 5}}))
    assert cli.main(["train", "--data", str(broken), "--interval", "10", "--backbone", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert f"--interval 10: {broken} holds stacks made at interval 5" in err and "--interval 5" in err


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(stacks: Path, tmp_path: Path) -> None:
    keep = tmp_path / "runs" / "photos"
    keep.mkdir(parents=True)
    (keep / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(TrainError, match="is not a run folder; refusing to delete it"):
        Trainer(config(stacks, tmp_path / "runs", "photos", overwrite=True))
    assert (keep / "holiday.jpg").is_file()


def test_balance_sampler_draws_classes_evenly_and_weights_invert_frequency() -> None:
    from pipeline.train.parts import batch_order, class_weights

    labels = np.array([0] * 90 + [1] * 10)
    drawn = np.concatenate(batch_order(labels, 10, "sampler", torch.Generator().manual_seed(0)))
    assert len(drawn) == 100 and 0.35 < (labels[drawn] == 1).mean() < 0.65
    shuffled = np.concatenate(batch_order(labels, 10, "none", torch.Generator().manual_seed(0)))
    assert sorted(shuffled) == list(range(100))
    # Worked by hand for 90 + 10 faces. Inverse frequency: 50/90 and 50/10, already averaging 1 per face.
    assert class_weights(np.array([90, 10])).tolist() == pytest.approx([5 / 9, 5.0])
    # Its square root, sqrt(5/9) : sqrt(5) = 1 : 3, rescaled so that 90 a + 10 * 3a = 100: a = 5/6.
    assert class_weights(np.array([90, 10]), 0.5).tolist() == pytest.approx([5 / 6, 5 / 2])
    assert class_weights(np.array([7, 7, 7])).tolist() == pytest.approx([1.0, 1.0, 1.0])  # balanced: no change
    assert class_weights(np.array([40, 0])).tolist() == pytest.approx([41 / 80, 41 / 2])  # an absent class counts 1


def _lookalike_stacks(out: Path, train: dict[str, int], val: int) -> Path:
    """Every stack the same picture, whatever its label: all the network can learn is the classes' prior."""
    from tests.fixtures.stacks import grating_stack

    picture = grating_stack(0, 2, 4, 32, np.random.default_rng(0))
    rows = []
    for split, counts in (("train", train), ("val", dict.fromkeys(train, val))):
        for label, n in counts.items():
            for i in range(n):
                rel = f"{split}/{label}/{i:04d}_000.tiff"
                write_stack(out / rel, picture, {"label": label, "split": split})
                rows.append(ManifestRow(stack=rel, label=label, split=split, source=f"{label}/{i}.mp4",
                                        video_id=f"{label}{i}", chunk=0, channels=4, frames=90, face_ratio=1.0,
                                        fingerprint="same"))
    write_manifest(out, rows)
    return out


def _best_single_answer(labels: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The class probabilities that, given for every stack, minimise the training loss (``Trainer.fit``'s)."""
    import torch.nn.functional as F

    logits = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.LBFGS([logits], max_iter=100)

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = F.cross_entropy(logits.expand(len(labels), 2), labels, weight=weights)
        value.backward()
        return value

    optimizer.step(loss)
    return torch.softmax(logits.detach(), 0)


def test_a_weighted_loss_moves_predictions_towards_the_rare_class(tmp_path: Path) -> None:
    """36 common to 6 rare stacks that look alike: the best a network can do is one answer for all, and the
    loss the Trainer trains with decides which. Unweighted it is the prior, 1/7 rare; weighted by inverse
    frequency the classes weigh the same, 1/2; by its square root 6 sqrt(6) / (36 + 6 sqrt(6)) = 0.29."""
    data = _lookalike_stacks(tmp_path / "same", {"common": 36, "rare": 6}, val=2)
    expected = {"none": 1 / 7, "sqrt": 6 * 6**0.5 / (36 + 6 * 6**0.5), "weights": 0.5}
    for balance, share in expected.items():
        trainer = Trainer(config(data, tmp_path / "runs", balance, balance=balance))
        answer = _best_single_answer(torch.from_numpy(trainer.train_set.labels).long(), trainer.loss_weights)
        rare = float(answer[trainer.data.classes.index("rare")])
        assert rare == pytest.approx(share, abs=1e-3), (balance, rare)


def test_schedules_and_optimizers(stacks: Path, tmp_path: Path) -> None:
    from pipeline.train.parts import lr_factor, make_optimizer

    exp = lr_factor(config(stacks, tmp_path, "x", schedule="exponential", gamma=0.985), steps_per_epoch=10)
    assert exp(0) == exp(9) == 1.0 and exp(10) == pytest.approx(0.985) and exp(25) == pytest.approx(0.985**2)
    cos = lr_factor(config(stacks, tmp_path, "x", schedule="cosine", warmup_epochs=1, epochs=10), steps_per_epoch=10)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0) and cos(99) < 0.02
    assert [cos(s) for s in range(10, 100)] == sorted((cos(s) for s in range(10, 100)), reverse=True)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    for name, kind in (("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)):
        opt = make_optimizer(model, config(stacks, tmp_path, "x", optimizer=name, weight_decay=0.01))
        assert isinstance(opt, kind)
        assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]  # no decay on biases and norms
        assert len(opt.param_groups[0]["params"]) == 1  # the conv kernel only
        assert opt.defaults.get("fused") is (None if name == "sgd" else True)  # one kernel per step on CPU


def test_the_fused_optimizer_makes_the_unfused_update(stacks: Path, tmp_path: Path) -> None:
    from pipeline.train.parts import make_optimizer

    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    settings = config(stacks, tmp_path, "x", weight_decay=0.05, lr=1e-2)
    fused = make_optimizer(models[0], settings)
    plain = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]}
                               for g in make_optimizer(models[1], settings).param_groups], lr=1e-2)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):  # the same gradients into both (through a model, float noise would differ)
        for a, b in zip(models[0].parameters(), models[1].parameters()):
            a.grad = torch.randn(a.shape, generator=gen)
            b.grad = a.grad.clone()
        fused.step()
        plain.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.slow
def test_early_stop_and_resume_with_more_patience(stacks: Path, tmp_path: Path) -> None:
    # A learning rate too small to change a prediction: accuracy ties, and a tie is no improvement.
    still = dict(lr=1e-12, epochs=4, patience=1, monitor="accuracy")
    stopped = run_train(config(stacks, tmp_path, "s", **still))
    assert stopped.state.stopped_early and stopped.state.epoch == 2
    again = run_train(config(stacks, tmp_path, "s", **{**still, "patience": 0}, resume=True))
    assert again.state.epoch == 4 and not again.state.stopped_early


def test_resume_takes_the_runs_own_settings_and_the_flags_typed_over_them(stacks: Path, tmp_path: Path) -> None:
    # `train --resume --name r` took the defaults for every flag not typed, and was refused as "different
    # settings" unless the whole first command was typed again.
    import cli
    from pipeline.train.cli import train_config

    first = config(stacks, tmp_path, "r", epochs=1, lr=3e-3, head_hidden=0, augment=AugmentSettings(enabled=False))
    run_train(first)
    args = cli.build_parser()[0].parse_args(["train", "--resume", "--name", "r", "--runs-dir", str(tmp_path),
                                             "--epochs", "2", "--no-progress"])
    resumed = train_config(args)
    assert resumed.resume and resumed.epochs == 2 and not resumed.progress  # typed
    assert (resumed.backbone, resumed.lr, resumed.head_hidden, resumed.input.image_size, resumed.data) == (
        "resnet18", 3e-3, 0, 32, stacks)  # the run's own
    assert not resumed.augment.enabled  # an inverted switch (--no-augment) read back the right way round
    assert run_train(resumed).state.epoch == 2
    typed = cli.build_parser()[0].parse_args(["train", "--resume", "--name", "r", "--runs-dir", str(tmp_path),
                                              "--lr", "1e-2"])
    assert train_config(typed).lr == 1e-2  # a flag typed still wins (and the loop then names the difference)


def test_a_run_saved_before_a_new_settings_field_still_resumes(stacks: Path, tmp_path: Path) -> None:
    """Runs saved before ``InputSettings.mirror`` existed were refused by --resume as "different settings"."""
    from models.checkpoint import save_checkpoint

    first = run_train(config(stacks, tmp_path, "old", epochs=1))
    last = first.run_dir / "last.pt"
    data = load_checkpoint(last)
    del data["train"]["input"]["mirror"]  # as written by the code before the field
    data.pop("path", None)
    save_checkpoint(last, data)
    resumed = run_train(config(stacks, tmp_path, "old", epochs=2, resume=True))
    assert len(_history_values(resumed.run_dir)) == 2
