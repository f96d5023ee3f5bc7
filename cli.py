#!/usr/bin/env python
"""Video-clip facial emotion pipeline: one entry point, one subcommand per stage.

    python cli.py prepare --source clips/ --interval 5     clips -> face stacks (TIFF) + manifest
    python cli.py train --backbone efficientnetv2_s        stacks -> a trained model in runs/<name>/
    python cli.py evaluate runs/<name> --split test        metrics and confusion matrix on any split
    python cli.py models                                   the backbones, with parameter counts
    python cli.py make-clips --out data/demo/clips         labelled face clips made from a photo
    python cli.py predict clip.mp4                         the emotion of a clip (default: shipped model)
    python cli.py live --camera 0                          rolling prediction from a camera
    python cli.py export runs/<name> --onnx model.onnx     ONNX (or compact int8) copy of a model
    python cli.py fetch                                    download and safely unzip the dataset (DATASET_DOWNLOAD_ID)
    python cli.py scrape --labels Happy,Sad --limit 20     labelled clips from Pexels/Pixabay (keys in .env)

Run `python cli.py COMMAND --help` for the options of a stage.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import fields
from pathlib import Path

# MediaPipe's C++ side logs a few lines per graph to stderr; keep the terminal for our output.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline.config import (  # noqa: E402
    AugmentSettings,
    InputSettings,
    PrepareConfig,
    SplitSettings,
    StackSettings,
    TrainConfig,
    default_out_dir,
)
from pipeline.console import fail as _fail  # noqa: E402
from pipeline.predict_commands import add_export, add_live, add_predict  # noqa: E402
from scrapers.fetch_command import add_fetch  # noqa: E402
from scrapers.scrape_command import add_scrape  # noqa: E402

_STACK_DEFAULTS = {f.name: f.default for f in fields(StackSettings)}
_SPLIT_DEFAULTS = {f.name: f.default for f in fields(SplitSettings)}
_TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if not callable(f.default_factory)}
_AUG_DEFAULTS = {f.name: f.default for f in fields(AugmentSettings)}




def add_prepare(sub: argparse._SubParsersAction) -> None:
    d, s = _STACK_DEFAULTS, _SPLIT_DEFAULTS
    p = sub.add_parser(
        "prepare",
        help="cut clips into sequences, crop the face in sampled frames, write N-channel TIFF stacks",
        description=(
            "Turn a folder of face clips into (channels, size, size) uint8 TIFF stacks, one per "
            "sequence of --sequence-length frames, sampling every --interval-th frame (90 frames at "
            "interval 5 -> 18 channels). Still images in <label>/ folders become 1-channel stacks. "
            "Writes <out>/<split>/<label>/<id>_<chunk>.tiff, manifest.csv and prepare_report.json. "
            "Reruns skip what is already done with the same settings."
        ),
        epilog=(
            "source layouts: DIR/Happy_0001.mp4 (label_id), DIR/happy/*.mp4, DIR/happy/*.png, "
            "DIR/train/happy/*.png + DIR/test/... (kept as splits), RAVDESS names (01-01-03-01-01-01-12.mp4: "
            "emotion and actor from the name), CREMA-D names (1001_DFA_ANG_XX.flv). A label_correction.csv "
            "(file,label; label 'drop' drops the file) in --source is applied automatically.\n"
            "example: python cli.py prepare --source data/clips --interval 5 --val-fraction 0.2\n"
            "example: python cli.py prepare --source RAVDESS --label-map surprised=shock,angry=anger,calm=drop,"
            "fearful=drop,disgust=drop --split-by actor"
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--source", type=Path, default=Path("data/clips"), help="folder of clips or images")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: data/stacks/interval_<k>)")
    p.add_argument("--interval", type=int, default=d["interval"], help="keep every k-th frame of a sequence")
    p.add_argument("--sequence-length", type=int, default=d["sequence_length"],
                   help="frames per sequence (90 = 3 s at 30 fps)")
    p.add_argument("--min-length", type=int, default=d["min_length"],
                   help="a trailing sequence with at least this many frames is kept and padded")
    p.add_argument("--size", type=int, default=d["size"], help="side of the square face crop in pixels")
    p.add_argument("--margin", type=float, default=d["margin"],
                   help="margin added around the face box, share of its size")
    p.add_argument("--detector", choices=["detection", "mesh"], default=d["detector"],
                   help="MediaPipe face detection (faster, same crop) or Face Mesh landmarks (the seed's)")
    p.add_argument("--on-no-face", choices=["skip", "center"], default=d["on_no_face"],
                   help="a sequence with no face at all: skip it, or crop the centre square")
    p.add_argument("--labels", default="", help="comma-separated allowed labels; others are reported as unknown")
    p.add_argument("--layout", choices=["auto", "seed", "ravdess", "cremad"], default="auto",
                   help="how file names give labels (auto: RAVDESS / CREMA-D names are recognised, else the seed's)")
    p.add_argument("--label-map", default="",
                   help="dataset labels onto classes: FROM=TO,... (TO 'drop' drops them) or a CSV with from,to")
    p.add_argument("--corrections", type=Path, default=None,
                   help="label_correction.csv (file,label or drop) (default: the one in --source, if any)")
    p.add_argument("--val-ids", default="", help="comma-separated video ids for validation, e.g. 0016,0017 "
                   "(overrides --val-fraction)")
    p.add_argument("--split-file", type=Path, default=None,
                   help="CSV with a path column (relative to --source) and a split or usage column "
                   "(train/val/test or FER2013's Training/PublicTest/PrivateTest); listed files follow it")
    p.add_argument("--val-fraction", type=float, default=s["val_fraction"],
                   help="share of videos per label for validation")
    p.add_argument("--test-fraction", type=float, default=s["test_fraction"], help="share of videos per label for test")
    p.add_argument("--seed", type=int, default=s["seed"], help="seed of the split shuffle")
    p.add_argument("--split-by", choices=["source", "actor"], default=s["by"],
                   help="actor: all clips of one person in one split (needs RAVDESS / CREMA-D names)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="clips processed in parallel (threads)")
    p.add_argument("--force", action="store_true", help="rebuild every stack, even those already done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def cmd_prepare(args: argparse.Namespace) -> int:
    from pipeline.labelling import parse_label_map
    from pipeline.prepare import PrepareError, PrepareInterrupted, format_summary, run_prepare

    try:
        stack = StackSettings(
            sequence_length=args.sequence_length, min_length=args.min_length, interval=args.interval,
            size=args.size, margin=args.margin, detector=args.detector, on_no_face=args.on_no_face,
        )
        split = SplitSettings(val_ids=_csv(args.val_ids), split_file=args.split_file, val_fraction=args.val_fraction,
                              test_fraction=args.test_fraction, seed=args.seed, by=args.split_by)
        label_map = parse_label_map(args.label_map)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.workers < 1:
        return _fail("--workers must be >= 1", 2)
    config = PrepareConfig(
        source=args.source, out=args.out or default_out_dir(args.interval), stack=stack, split=split,
        labels=_csv(args.labels), layout=args.layout, label_map=label_map, corrections=args.corrections,
        workers=args.workers, force=args.force, progress=not args.no_progress,
    )
    try:
        result = run_prepare(config)
    except PrepareInterrupted as exc:
        return _fail(str(exc), 130)
    except PrepareError as exc:
        return _fail(str(exc), 1)
    print(format_summary(result.report))
    return 0


def add_make_clips(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-clips",
        help="make labelled face clips from photos (demo and test data; no video can be downloaded here)",
        description=(
            "Write clips of a real face photo moving across a larger frame (pan, zoom, tilt, "
            "lighting drift). With --photos DIR (<label>/*.jpg) one clip per photo, named "
            "<Label>_<id>.mp4; without it, clips of scikit-image's public-domain astronaut photo. "
            "Adds a faceless clip, a too-short clip and a corrupt file with --with-bad-files."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("data/demo/clips"), help="folder to write the clips to")
    p.add_argument("--photos", type=Path, default=None, help="folder of <label>/ photo folders")
    p.add_argument("--per-label", type=int, default=3, help="clips per label")
    p.add_argument("--seconds", type=float, default=4.0, help="clip length")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second")
    p.add_argument("--width", type=int, default=640, help="frame width")
    p.add_argument("--height", type=int, default=480, help="frame height")
    p.add_argument("--with-bad-files", action="store_true", help="also write a faceless, a short and a corrupt file")
    p.set_defaults(func=cmd_make_clips)


def cmd_make_clips(args: argparse.Namespace) -> int:
    from pipeline.demo_clips import make_clip_set

    try:
        paths = make_clip_set(args.out, photos=args.photos, per_label=args.per_label, seconds=args.seconds,
                              fps=args.fps, size=(args.width, args.height), with_bad_files=args.with_bad_files)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc), 2)
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    d, a = _TRAIN_DEFAULTS, _AUG_DEFAULTS
    p = sub.add_parser(
        "train",
        help="train a timm backbone with an N-channel first conv on the stacks",
        description=(
            "Train on the stacks in --data (default data/stacks/interval_<k>): train split for the "
            "weights, val split for model selection and early stopping. Writes runs/<name>/ with best.pt, "
            "last.pt, history.csv, metrics.json, classification_report.csv, confusion_matrix.png and "
            "curves.png. Augmentation is drawn fresh every epoch, one transform per stack for all channels."
        ),
        epilog=(
            "examples:\n  python cli.py train --backbone efficientnetv2_s --interval 5\n"
            "  python cli.py train --data data/stacks/fer2013_48 --backbone resnet18 --image-size 48 --name fer\n"
            "  python cli.py train --backbone resnet18 --interval 5 --init runs/fer   (face-image pretraining)"
        ),
        formatter_class=lambda prog: argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=34),
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, default=None, help="stack folder (default: data/stacks/interval_<k>)")
    g.add_argument("--interval", type=int, default=_STACK_DEFAULTS["interval"],
                   help="picks the default --data folder")
    g.add_argument("--image-size", type=int, default=InputSettings().image_size,
                   help="side the stacks are resized to for the network")
    g.add_argument("--cache", choices=["memory", "disk"], default=d["cache"],
                   help="hold the uint8 stacks in memory, or in a memory-mapped file under <data>/.cache")
    g.add_argument("--balance", choices=["none", "weights", "sampler"], default=d["balance"],
                   help="class imbalance: nothing, weighted loss, or class-balanced sampling")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", default=d["backbone"], help="see `python cli.py models`")
    g.add_argument("--pretrained", action="store_true", help="timm's ImageNet weights (needs internet)")
    g.add_argument("--weights", type=Path, default=None, help="local .pth/.safetensors weights of the same backbone")
    g.add_argument("--init", type=Path, default=None,
                   help="start from one of our runs or checkpoints (e.g. a face-image model)")
    g.add_argument("--head-hidden", type=int, default=d["head_hidden"], help="hidden units of the head (0: linear)")
    g.add_argument("--head-dropout", type=float, default=d["head_dropout"], help="dropout before the head")
    g.add_argument("--head-dropout-hidden", type=float, default=d["head_dropout_hidden"],
                   help="dropout after the hidden layer")
    g.add_argument("--drop-path", type=float, default=d["drop_path"], help="stochastic depth rate of the backbone")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d["epochs"])
    g.add_argument("--batch-size", type=int, default=d["batch_size"])
    g.add_argument("--optimizer", choices=["adamw", "adam", "sgd"], default=d["optimizer"])
    g.add_argument("--lr", type=float, default=d["lr"], help="base learning rate")
    g.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    g.add_argument("--momentum", type=float, default=d["momentum"], help="SGD momentum (Nesterov)")
    g.add_argument("--schedule", choices=["cosine", "exponential", "constant"], default=d["schedule"],
                   help="cosine with warmup, or the seed's exponential decay")
    g.add_argument("--gamma", type=float, default=d["gamma"], help="exponential: lr factor per epoch")
    g.add_argument("--warmup-epochs", type=float, default=d["warmup_epochs"], help="cosine: linear warmup")
    g.add_argument("--clip-grad", type=float, default=d["clip_grad"], help="max gradient norm (0: off)")
    g.add_argument("--label-smoothing", type=float, default=d["label_smoothing"])
    g.add_argument("--monitor", choices=["accuracy", "uar", "macro_f1", "loss"], default=d["monitor"],
                   help="validation metric that picks best.pt and drives early stopping")
    g.add_argument("--patience", type=int, default=d["patience"],
                   help="stop after this many epochs without improvement (0: never)")
    g = p.add_argument_group("augmentation (per stack, same for all channels, fresh every epoch)")
    g.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    g.add_argument("--flip", type=float, default=a["flip"], help="probability of a horizontal flip")
    g.add_argument("--rotate", type=float, default=a["rotate"], help="max rotation in degrees")
    g.add_argument("--translate", type=float, default=a["translate"], help="max shift, share of the side")
    g.add_argument("--scale", type=float, default=a["scale"], help="max zoom change (1 +/- scale)")
    g.add_argument("--brightness", type=float, default=a["brightness"], help="max brightness change")
    g.add_argument("--contrast", type=float, default=a["contrast"], help="max contrast change")
    g.add_argument("--blur", type=float, default=a["blur"], help="probability of a Gaussian blur")
    g.add_argument("--erase", type=float, default=a["erase"], help="probability of random erasing")
    g = p.add_argument_group("run")
    g.add_argument("--name", default=None, help="run folder name (default: <backbone>_<data folder name>)")
    g.add_argument("--runs-dir", type=Path, default=d["runs_dir"], help="where run folders go")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its last.pt")
    g.add_argument("--overwrite", action="store_true", help="start an existing run folder again")
    g.add_argument("--device", default=d["device"], help="auto, cpu, cuda, cuda:N or mps")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=d["precision"],
                   help="bf16 autocast; auto: on CUDA, and on CPUs with native bf16 for backbones it speeds up")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--seed", type=int, default=d["seed"], help="same seed + same data = same metrics on CPU")
    g.add_argument("--threads", type=int, default=d["threads"], help="CPU threads for torch (0: torch's default)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines are still printed)")
    p.set_defaults(func=cmd_train)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    data = args.data or default_out_dir(args.interval)
    augment = AugmentSettings(enabled=not args.no_augment, flip=args.flip, rotate=args.rotate,
                              translate=args.translate, scale=args.scale, brightness=args.brightness,
                              contrast=args.contrast, blur=args.blur, erase=args.erase)
    return TrainConfig(
        data=data, name=args.name or f"{args.backbone}_{data.name}", runs_dir=args.runs_dir, backbone=args.backbone,
        input=InputSettings(image_size=args.image_size), augment=augment, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, optimizer=args.optimizer,
        momentum=args.momentum, schedule=args.schedule, gamma=args.gamma, warmup_epochs=args.warmup_epochs,
        clip_grad=args.clip_grad, label_smoothing=args.label_smoothing, balance=args.balance, monitor=args.monitor,
        patience=args.patience, device=args.device, precision=args.precision, compile=args.compile,
        seed=args.seed, resume=args.resume,
        overwrite=args.overwrite, pretrained=args.pretrained, weights=args.weights, init=args.init,
        head_hidden=args.head_hidden, head_dropout=args.head_dropout, head_dropout_hidden=args.head_dropout_hidden,
        drop_path=args.drop_path, cache=args.cache, threads=args.threads, progress=not args.no_progress,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from models.registry import UnknownBackbone, get_backbone

    try:
        get_backbone(args.backbone)
        config = _train_config(args)
    except (ValueError, UnknownBackbone) as exc:
        return _fail(str(exc), 2)
    from pipeline.train import TrainError, TrainInterrupted, run_train

    try:
        result = run_train(config)
    except TrainInterrupted as exc:
        return _fail(str(exc), 130)
    except TrainError as exc:
        return _fail(str(exc), 1)
    m = result.metrics
    print(f"val accuracy {m['accuracy']:.4f}  UAR {m['uar']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
          f"(best.pt, epoch {m['epoch']}); artefacts in {result.run_dir}")
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics, classification report and confusion matrix of a run on any split",
        description=("Load runs/<name>/best.pt (or a checkpoint file) and evaluate it on a split of its stack "
                     "folder, or of --data. Writes metrics[_<split>].json, classification_report[_<split>].csv "
                     "and confusion_matrix[_<split>].png into the run folder (no suffix for val)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", type=Path, help="run folder or checkpoint file")
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="which split to evaluate")
    p.add_argument("--data", type=Path, default=None, help="stack folder (default: the one the run trained on)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.evaluate import evaluate_run
    from pipeline.training_parts import TrainError

    try:
        m = evaluate_run(args.run, args.split, args.data, args.device, progress=not args.no_progress)
    except TrainError as exc:
        return _fail(str(exc), 1)
    print(f"{args.split}: {m['samples']} stacks  accuracy (WAR) {m['accuracy']:.4f}  UAR {m['uar']:.4f}  "
          f"macro-F1 {m['macro_f1']:.4f}")
    width = max(len(c) for c in m["classes"])
    print(f"  {'class':<{width}}  precision  recall     f1  support")
    for name, r in m["per_class"].items():
        print(f"  {name:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    return 0


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the backbones with their parameter counts",
                       description="The backbones `train --backbone` accepts, with parameters for a given input.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--channels", type=int, default=StackSettings().channels, help="input channels")
    p.add_argument("--classes", type=int, default=5, help="output classes")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from models.network import EmotionNet, ModelSettings, count_parameters
    from models.registry import BACKBONES

    print(f"{'backbone':<20} {'timm model':<24} {'parameters':>12}  note   ({args.channels} channels, "
          f"{args.classes} classes, default head)")
    for spec in BACKBONES.values():
        model = EmotionNet(ModelSettings(spec.name, args.channels, tuple(map(str, range(args.classes)))))
        print(f"{spec.name:<20} {spec.timm_name:<24} {count_parameters(model) / 1e6:>11.2f}M  {spec.note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cli.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_prepare(sub)
    add_train(sub)
    add_evaluate(sub)
    add_models(sub)
    add_make_clips(sub)
    add_predict(sub)
    add_live(sub)
    add_export(sub)
    add_fetch(sub)
    add_scrape(sub)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C and a scheduler's SIGTERM both stop cleanly, even when the parent shell ignored SIGINT.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
