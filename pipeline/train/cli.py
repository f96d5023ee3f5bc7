"""`cli.py train` and `cli.py evaluate`: argument parsing and printing only.

`train`'s flags are generated from ``TrainConfig``'s fields (pipeline/train/settings.py), and so is the
reading of a `train --config` file: defaults < (with --resume) the run's saved config.json < file < flags
typed here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.commands import Subcommands, add_command
from pipeline.config_files import ConfigFileError, read_table
from pipeline.console import fail as _fail
from pipeline.console import run_stage
from pipeline.options import (
    add_options,
    build,
    given,
    option_table,
    values_from_args,
    values_from_file,
    values_from_saved,
)
from pipeline.train.settings import TrainConfig

TRAIN_EPILOG = """\
examples:
  python cli.py train --backbone efficientnetv2_s --interval 5
  python cli.py train --data data/stacks/fer2013_48 --backbone resnet18 --image-size 48 --name fer
  python cli.py train --backbone resnet18 --interval 5 --init runs/fer   (face-image pretraining)
  python cli.py train --config run.toml --epochs 5   (run.toml: lr = 3e-4, backbone = "resnet18", ...)
"""


def add_train(sub: Subcommands) -> None:
    p = add_command(
        sub, "train", func=cmd_train, width=34, epilog=TRAIN_EPILOG,
        help="train a timm backbone with an N-channel first conv on the stacks",
        description=(
            "Train on the stacks in --data (default data/stacks/interval_<k>): train split for the "
            "weights, val split for model selection and early stopping. Writes runs/<name>/ with best.pt, "
            "last.pt, history.csv, metrics.json, classification_report.csv, confusion_matrix.png and "
            "curves.png. Augmentation is drawn fresh every epoch, one transform per stack for all channels."
        ),
    )
    p.add_argument("--config", type=Path, default=None,
                   help="TOML or YAML file of these options, keys as the flags without -- (lr = 3e-4, "
                        "no_augment = true); flags given here override it")
    add_options(p, TrainConfig)


# Not taken from the run being resumed: how to find it, and what --resume itself means.
NOT_RESUMED = {"resume", "overwrite", "runs_dir", "name"}


def _saved_settings(config: TrainConfig) -> dict:
    """--resume: the option values of the run's own config.json, so that `train --resume --name r` needs
    none of the flags it was started with ({} where there is no readable one: the loop then says why)."""
    try:
        saved = json.loads((config.run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict):
        return {}
    return {k: v for k, v in values_from_saved(TrainConfig, saved).items() if k not in NOT_RESUMED}


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: defaults < (with --resume) the run's saved config.json < the --config file < the
    flags typed; ValueError (one line) for a bad value."""
    path = getattr(args, "config", None)
    try:
        from_file = {} if path is None else values_from_file(option_table(TrainConfig),
                                                             read_table(path, "--config"), str(path))
    except ConfigFileError as exc:
        raise ValueError(str(exc)) from None
    typed = values_from_args(TrainConfig, args, only_given=True)
    try:
        config = build(TrainConfig, {**from_file, **typed})
        if config.resume:
            saved = _saved_settings(config)
            if saved:
                config = build(TrainConfig, {**saved, **from_file, **typed, "name": config.name})
        return config
    except ValueError as exc:  # a check across options: name the file when one of its values is in question
        mentioned = [name for name, opt in ((o.name, o) for o in option_table(TrainConfig))
                     if name in from_file and name not in typed and opt.flag in str(exc)]
        raise ValueError(f"{path} ({', '.join(mentioned)}): {exc}" if mentioned else str(exc)) from None


def cmd_train(args: argparse.Namespace) -> int:
    from models.registry import UnknownBackbone, get_backbone

    try:
        config = train_config(args)
        get_backbone(config.backbone)
    except (ValueError, UnknownBackbone) as exc:
        return _fail(str(exc), 2)
    if "interval" in given(args):  # it picks the folder; stacks of another interval there trained without a word
        from pipeline.train.data import stacks_interval

        made = stacks_interval(config.data)
        if made is not None and made != args.interval:
            return _fail(f"--interval {args.interval}: {config.data} holds stacks made at interval {made}: make "
                         f"them again (`python cli.py prepare --source CLIPS_DIR --interval {args.interval} --out "
                         f"{config.data}`), or train with --interval {made}", 2)
    from pipeline.train.loop import TrainError, TrainInterrupted, TrainResult, run_train

    def show(result: TrainResult) -> int:
        m = result.metrics
        print(f"val accuracy {m['accuracy']:.4f}  UAR {m['uar']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
              f"(best.pt, epoch {m['epoch']}); artefacts in {result.run_dir}")
        return 0

    return run_stage(lambda: run_train(config), show, interrupted=TrainInterrupted,
                     failed=(TrainError, OSError))


def add_evaluate(sub: Subcommands) -> None:
    p = add_command(
        sub, "evaluate", func=cmd_evaluate,
        help="metrics, classification report and confusion matrix of a run on any split",
        description=("Load runs/<name>/best.pt (or a checkpoint file) and evaluate it on a split of its stack "
                     "folder, or of --data. Writes metrics[_<split>].json, classification_report[_<split>].csv "
                     "and confusion_matrix[_<split>].png into the run folder, or --out (no suffix for val)."),
    )
    p.add_argument("run", type=Path, help="run folder or checkpoint file")
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="which split to evaluate")
    p.add_argument("--data", type=Path, default=None, help="stack folder (default: the one the run trained on)")
    add_options(p, TrainConfig, only=["device"])
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the metrics and plots (default: the run folder, or the checkpoint's folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.train.evaluate import evaluate_run, evaluation_dir, output_names
    from pipeline.train.parts import TrainError

    try:
        m = evaluate_run(args.run, args.split, args.data, args.device, progress=not args.no_progress, out=args.out)
    except TrainError as exc:
        return _fail(str(exc), 1)
    print(f"{args.split}: {m['samples']} stacks  accuracy (WAR) {m['accuracy']:.4f}  UAR {m['uar']:.4f}  "
          f"macro-F1 {m['macro_f1']:.4f}")
    width = max(len(c) for c in m["classes"])
    print(f"  {'class':<{width}}  precision  recall     f1  support")
    for name, r in m["per_class"].items():
        print(f"  {name:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    names = output_names(args.split)  # they went into the checkpoint's folder without a word
    print(f"written to {evaluation_dir(args.run, args.out)}: {', '.join(names.values())}")
    return 0
