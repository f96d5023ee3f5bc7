#!/usr/bin/env python
"""Video-clip facial emotion pipeline: one entry point, one subcommand per stage.

    python cli.py prepare --source clips/ --interval 5     clips -> face stacks (TIFF) + manifest
    python cli.py make-clips --out data/demo/clips         labelled face clips made from a photo

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

from pipeline.config import PrepareConfig, SplitSettings, StackSettings, default_out_dir  # noqa: E402

_STACK_DEFAULTS = {f.name: f.default for f in fields(StackSettings)}
_SPLIT_DEFAULTS = {f.name: f.default for f in fields(SplitSettings)}


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


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
            "DIR/train/happy/*.png + DIR/test/... (kept as splits).\n"
            "example: python cli.py prepare --source data/clips --interval 5 --val-fraction 0.2"
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
    p.add_argument("--val-ids", default="", help="comma-separated video ids for validation, e.g. 0016,0017 "
                   "(overrides --val-fraction)")
    p.add_argument("--val-fraction", type=float, default=s["val_fraction"],
                   help="share of videos per label for validation")
    p.add_argument("--test-fraction", type=float, default=s["test_fraction"], help="share of videos per label for test")
    p.add_argument("--seed", type=int, default=s["seed"], help="seed of the split shuffle")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="clips processed in parallel (threads)")
    p.add_argument("--force", action="store_true", help="rebuild every stack, even those already done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def cmd_prepare(args: argparse.Namespace) -> int:
    from pipeline.prepare import PrepareError, PrepareInterrupted, format_summary, run_prepare

    try:
        stack = StackSettings(
            sequence_length=args.sequence_length, min_length=args.min_length, interval=args.interval,
            size=args.size, margin=args.margin, detector=args.detector, on_no_face=args.on_no_face,
        )
        split = SplitSettings(val_ids=_csv(args.val_ids), val_fraction=args.val_fraction,
                              test_fraction=args.test_fraction, seed=args.seed)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.workers < 1:
        return _fail("--workers must be >= 1", 2)
    config = PrepareConfig(
        source=args.source, out=args.out or default_out_dir(args.interval), stack=stack, split=split,
        labels=_csv(args.labels), workers=args.workers, force=args.force, progress=not args.no_progress,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cli.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_prepare(sub)
    add_make_clips(sub)
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
