"""`cli.py train` and `cli.py evaluate`: their flags, the mapping onto ``TrainConfig`` (shared with `grid`),
the commands."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from pipeline.console import fail as _fail
from pipeline.prepare.settings import default_out_dir
from pipeline.train.settings import AugmentSettings, TrainConfig
from stacks.settings import InputSettings, StackSettings

_STACK_DEFAULTS = {f.name: f.default for f in fields(StackSettings)}
_TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if not callable(f.default_factory)}
_AUG_DEFAULTS = {f.name: f.default for f in fields(AugmentSettings)}


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
    g.add_argument("--balance", choices=["none", "weights", "sqrt", "sampler"], default=d["balance"],
                   help="class imbalance: nothing, a loss weighted by inverse class frequency (sqrt: by its "
                        "square root), or class-balanced sampling")
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
    g.add_argument("--targets", choices=["majority", "soft"], default=d["targets"],
                   help="train against each stack's label, or against the annotators' vote distribution in the "
                   "manifest (FER+; cross-entropy with the vote shares)")
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


def train_config(args: argparse.Namespace) -> TrainConfig:
    """`train`'s flags onto its typed config (`grid` reuses it for every cell); ValueError for a bad value."""
    data = args.data or default_out_dir(args.interval)
    augment = AugmentSettings(enabled=not args.no_augment, flip=args.flip, rotate=args.rotate,
                              translate=args.translate, scale=args.scale, brightness=args.brightness,
                              contrast=args.contrast, blur=args.blur, erase=args.erase)
    return TrainConfig(
        data=data, name=args.name or f"{args.backbone}_{data.name}", runs_dir=args.runs_dir, backbone=args.backbone,
        input=InputSettings(image_size=args.image_size), augment=augment, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, optimizer=args.optimizer,
        momentum=args.momentum, schedule=args.schedule, gamma=args.gamma, warmup_epochs=args.warmup_epochs,
        clip_grad=args.clip_grad, label_smoothing=args.label_smoothing, targets=args.targets, balance=args.balance,
        monitor=args.monitor,
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
        config = train_config(args)
    except (ValueError, UnknownBackbone) as exc:
        return _fail(str(exc), 2)
    from pipeline.train.loop import TrainError, TrainInterrupted, run_train

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
                     "and confusion_matrix[_<split>].png into the run folder, or --out (no suffix for val)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", type=Path, help="run folder or checkpoint file")
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="which split to evaluate")
    p.add_argument("--data", type=Path, default=None, help="stack folder (default: the one the run trained on)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the metrics and plots (default: the run folder, or the checkpoint's folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.train.evaluate import evaluate_run
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
    return 0
