"""`cli.py prepare`: its flags, their mapping onto ``PrepareConfig`` (shared with `grid`), the command."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

from pipeline.console import fail as _fail
from pipeline.prepare.settings import PrepareConfig, SplitSettings, default_out_dir
from stacks.settings import StackSettings

_STACK_DEFAULTS = {f.name: f.default for f in fields(StackSettings)}
_SPLIT_DEFAULTS = {f.name: f.default for f in fields(SplitSettings)}


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
            "DIR/train/happy/*.png + DIR/test/... (kept as splits), FER+ (DIR/train/label.csv with ten votes per "
            "image: majority label and votes in the manifest; unknown, NF and contempt majorities dropped), "
            "RAVDESS names (01-01-03-01-01-01-12.mp4: "
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
    p.add_argument("--layout", choices=["auto", "seed", "ravdess", "cremad", "ferplus"], default="auto",
                   help="how file names give labels (auto: RAVDESS / CREMA-D names and FER+ <split>/label.csv "
                   "files are recognised, else the seed's)")
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


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def prepare_config(args: argparse.Namespace) -> PrepareConfig:
    """`prepare`'s flags onto its typed config (`grid` reuses it); ValueError for a bad value."""
    from pipeline.prepare.labelling import parse_label_map

    stack = StackSettings(
        sequence_length=args.sequence_length, min_length=args.min_length, interval=args.interval,
        size=args.size, margin=args.margin, detector=args.detector, on_no_face=args.on_no_face,
    )
    split = SplitSettings(val_ids=csv_list(args.val_ids), split_file=args.split_file, val_fraction=args.val_fraction,
                          test_fraction=args.test_fraction, seed=args.seed, by=args.split_by)
    if args.workers < 1:
        raise ValueError("--workers must be >= 1")
    return PrepareConfig(
        source=args.source, out=args.out or default_out_dir(args.interval), stack=stack, split=split,
        labels=csv_list(args.labels), layout=args.layout, label_map=parse_label_map(args.label_map),
        corrections=args.corrections, workers=args.workers, force=args.force, progress=not args.no_progress,
    )


def cmd_prepare(args: argparse.Namespace) -> int:
    from pipeline.prepare.run import PrepareError, PrepareInterrupted, format_summary, run_prepare

    try:
        config = prepare_config(args)
    except ValueError as exc:
        return _fail(str(exc), 2)
    try:
        result = run_prepare(config)
    except PrepareInterrupted as exc:
        return _fail(str(exc), 130)
    except PrepareError as exc:
        return _fail(str(exc), 1)
    print(format_summary(result.report))
    return 0
