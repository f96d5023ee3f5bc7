#!/usr/bin/env python
"""Video-clip facial emotion pipeline: one entry point, one subcommand per stage.

    python cli.py prepare --source clips/ --interval 5     clips -> face stacks (TIFF) + manifest
    python cli.py train --backbone efficientnetv2_s        stacks -> a trained model in runs/<name>/
    python cli.py evaluate runs/<name> --split test        metrics and confusion matrix on any split
    python cli.py models                                   the backbones, with parameter counts
    python cli.py grid --intervals 5,10,15                 interval x backbone benchmark table in grids/<name>/
    python cli.py make-clips --out data/demo/clips         labelled face clips made from a photo
    python cli.py predict clip.mp4                         the emotion of a clip (default: shipped model)
    python cli.py live --camera 0                          rolling prediction from a camera
    python cli.py export runs/<name> --onnx model.onnx     ONNX (or compact int8) copy of a model
    python cli.py fetch                                    download and safely unzip the dataset (DATASET_DOWNLOAD_ID)
    python cli.py scrape --labels Happy,Sad --limit 20     labelled clips from Pexels/Pixabay (keys in .env)
    python cli.py journal                                  the video journal web app on http://127.0.0.1:8000

Run `python cli.py COMMAND --help` for the options of a stage.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

# Quieter native libraries (glog, TensorFlow Lite) where they honour these; MediaPipe 1.x's own start-up lines
# do not, and stacks/faces.py keeps them off the terminal.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline.commands import Subcommands, add_command, parse_command_line  # noqa: E402
from pipeline.console import fail as _fail  # noqa: E402
from pipeline.console import setup_logging  # noqa: E402
from pipeline.grid.cli import add_grid  # noqa: E402
from pipeline.journal.cli import add_journal  # noqa: E402
from pipeline.prepare.cli import add_prepare  # noqa: E402
from pipeline.serve.cli import add_export, add_live, add_predict  # noqa: E402
from pipeline.train.cli import add_evaluate, add_train  # noqa: E402
from scrapers.fetch_command import add_fetch  # noqa: E402
from scrapers.scrape_command import add_scrape  # noqa: E402
from stacks.settings import StackSettings  # noqa: E402


def add_make_clips(sub: Subcommands) -> None:
    p = add_command(
        sub, "make-clips", func=cmd_make_clips,
        help="make labelled face clips from photos (demo and test data, and clips to try prepare and train on)",
        description=(
            "Write H.264 clips (they play in a browser and in the journal) of a real face photo moving across a "
            "larger frame (pan, zoom, tilt, lighting drift). With --photos DIR (<label>/*.jpg) one clip per "
            "photo, named <Label>_<id>.mp4; without it, clips of scikit-image's public-domain astronaut photo. "
            "--with-bad-files adds a faceless clip, a too-short clip and a corrupt file, named <Label>_0901-0903.mp4 "
            "as such files turn up in a labelled dataset, to see how prepare reports them."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("data/demo/clips"), help="folder to write the clips to")
    p.add_argument("--photos", type=Path, default=None, help="folder of <label>/ photo folders")
    p.add_argument("--per-label", type=int, default=3,
                   help="clips per label folder of --photos; without --photos, that many happy clips")
    p.add_argument("--seconds", type=float, default=4.0, help="clip length")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second")
    p.add_argument("--width", type=int, default=640, help="frame width")
    p.add_argument("--height", type=int, default=480, help="frame height")
    p.add_argument("--with-bad-files", action="store_true", help="also write a faceless, a short and a corrupt file")


def cmd_make_clips(args: argparse.Namespace) -> int:
    from tests.fixtures.clip_sets import make_clip_set

    wrong = [f"{flag} must be > 0 (got {value:g})" for flag, value in (
        ("--per-label", args.per_label), ("--seconds", args.seconds), ("--fps", args.fps), ("--width", args.width),
        ("--height", args.height)) if not value > 0]
    wrong += [f"{flag} must be even for H.264 (got {value})" for flag, value in (
        ("--width", args.width), ("--height", args.height)) if value > 0 and value % 2]
    if wrong:  # --per-label 0 wrote nothing and said "wrote 0 files"; --seconds -1 wrote one frame
        return _fail("; ".join(wrong), 2)
    try:
        args.out.mkdir(parents=True, exist_ok=True)  # an --out that cannot be written: said before any work
        paths = make_clip_set(args.out, photos=args.photos, per_label=args.per_label, seconds=args.seconds,
                              fps=args.fps, size=(args.width, args.height), with_bad_files=args.with_bad_files,
                              progress=True, h264=True)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc), 2)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename or args.out}: {exc.strerror or exc}; choose another --out", 1)
    print(f"wrote {len(paths)} file{'' if len(paths) == 1 else 's'} to {args.out}")
    return 0


def add_models(sub: Subcommands) -> None:
    p = add_command(sub, "models", func=cmd_models, help="list the backbones with their parameter counts",
                    description="The backbones `train --backbone` accepts, with parameters for a given input.")
    p.add_argument("--channels", type=int, default=StackSettings().channels, help="input channels")
    p.add_argument("--classes", type=int, default=5, help="output classes")


def cmd_models(args: argparse.Namespace) -> int:
    from models.network import EmotionNet, ModelSettings, count_parameters
    from models.registry import BACKBONES

    print(f"{'backbone':<20} {'timm model':<24} {'parameters':>12}  note   ({args.channels} channels, "
          f"{args.classes} classes, default head)")
    for spec in BACKBONES.values():
        model = EmotionNet(ModelSettings(spec.name, args.channels, tuple(map(str, range(args.classes)))))
        print(f"{spec.name:<20} {spec.timm_name:<24} {count_parameters(model) / 1e6:>11.2f}M  {spec.note}")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, Subcommands]:
    parser = argparse.ArgumentParser(
        prog="cli.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_prepare(sub)
    add_train(sub)
    add_evaluate(sub)
    add_models(sub)
    add_grid(sub)
    add_make_clips(sub)
    add_predict(sub)
    add_live(sub)
    add_export(sub)
    add_fetch(sub)
    add_scrape(sub)
    add_journal(sub)
    return parser, sub


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C and a scheduler's SIGTERM both stop cleanly, even when the parent shell ignored SIGINT.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    setup_logging()  # the stages' progress lines (`logging`) on the terminal, as plain lines
    args = parse_command_line(*build_parser(), argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not in the interpreter's last flush
        return code
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:  # the reader went away (`... | head -1`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush cannot fail again
        return 141
    finally:
        if (faces := sys.modules.get("stacks.faces")) is not None:  # only if a stage loaded MediaPipe
            faces.close_finders()


if __name__ == "__main__":
    sys.exit(main())
