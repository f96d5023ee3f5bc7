"""`cli.py prepare`: argument parsing and printing only (the flags are generated from ``PrepareConfig``)."""

from __future__ import annotations

import argparse

from pipeline.commands import Subcommands, add_command
from pipeline.console import fail as _fail
from pipeline.console import run_stage
from pipeline.options import add_options, settings_from
from pipeline.prepare.settings import PrepareConfig


def add_prepare(sub: Subcommands) -> None:
    p = add_command(
        sub, "prepare", func=cmd_prepare,
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
    )
    add_options(p, PrepareConfig)


def cmd_prepare(args: argparse.Namespace) -> int:
    from pipeline.prepare.run import PrepareError, PrepareInterrupted, PrepareResult, format_summary, run_prepare

    try:
        config = settings_from(PrepareConfig, args)
    except ValueError as exc:
        return _fail(str(exc), 2)

    def show(result: PrepareResult) -> int:
        print(format_summary(result.report))
        return 0

    return run_stage(lambda: run_prepare(config), show, interrupted=PrepareInterrupted,
                     failed=(PrepareError, OSError))
