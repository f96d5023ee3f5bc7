"""`cli.py evaluate`: a run's best.pt on any split -> metrics, classification report, confusion matrix.

Validation results are written without a suffix (metrics.json, ...), the ones of another split
with it (metrics_test.json, classification_report_test.csv, confusion_matrix_test.png).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from pipeline.checkpoints import read_checkpoint, rebuild_model
from pipeline.plots import plot_confusion
from pipeline.train.data import DataError, load_split, read_run_data
from pipeline.train.inference import predict_logits
from pipeline.train.metrics import classification_report_csv, confusion_matrix, summarise
from pipeline.train.parts import TrainError, resolve_device
from stacks.atomic import atomic_write, atomic_write_text
from stacks.dataset import StackDataset
from stacks.settings import InputSettings


def output_names(split: str) -> dict[str, str]:
    suffix = "" if split == "val" else f"_{split}"
    return {"metrics": f"metrics{suffix}.json", "report": f"classification_report{suffix}.csv",
            "confusion": f"confusion_matrix{suffix}.png"}


def write_evaluation(model: nn.Module, dataset: StackDataset, checkpoint: dict, split: str, run_dir: Path,
                     device: torch.device, progress: bool = False) -> dict:
    inputs = InputSettings(**checkpoint["input"])
    logits, loss = predict_logits(model, dataset, inputs, device, progress=progress, desc=f"evaluate {split}")
    classes = list(checkpoint["model"]["classes"])
    metrics = summarise(confusion_matrix(dataset.labels, logits.argmax(1), len(classes)), classes, loss)
    metrics.update({"split": split, "checkpoint": checkpoint.get("path", ""), "epoch": checkpoint.get("epoch")})
    names = output_names(split)
    atomic_write_text(run_dir / names["metrics"], json.dumps(metrics, indent=2) + "\n")
    atomic_write_text(run_dir / names["report"], classification_report_csv(metrics))
    title = (f"{run_dir.name} on {split}: accuracy {metrics['accuracy']:.3f}, UAR {metrics['uar']:.3f} "
             f"({metrics['samples']} stacks)")
    atomic_write(run_dir / names["confusion"],
                 lambda tmp: plot_confusion(metrics["confusion_matrix"], classes, tmp, title))
    return metrics


def evaluation_dir(run: Path, out: Path | None = None) -> Path:
    """Where `evaluate` writes: ``out``, else the run folder, else the checkpoint file's folder."""
    run = Path(run)
    return Path(out) if out is not None else run if run.is_dir() else run.parent


def evaluate_run(run: Path, split: str = "val", data: Path | None = None, device: str = "auto",
                 progress: bool = True, out: Path | None = None) -> dict:
    """Recompute the metrics and plots of a run's best.pt on ``split`` of its (or another) stack folder.

    They are written into ``out``, else the run folder (the checkpoint's folder for a file)."""
    run = Path(run)
    checkpoint = read_checkpoint(run, TrainError)
    model = rebuild_model(checkpoint, TrainError)  # e.g. another timm version, an unregistered backbone
    run_dir = evaluation_dir(run, out)
    folder = Path(data or checkpoint["train"]["data"])
    classes = list(checkpoint["model"]["classes"])
    try:
        if data is None and not folder.is_dir():
            raise DataError(f"the run's stack folder {folder} is not here (a relative path is taken from the "
                            "current folder): pass it with --data")
        run_data = read_run_data(folder, classes=classes)
        if run_data.channels != checkpoint["model"]["in_chans"]:
            fix = ("a frame model is evaluated on face-image stacks (prepare --source FACES_DIR --size 48 "
                   "--on-no-face center; README: FER2013); `predict` classifies clips with it"
                   if checkpoint["model"]["in_chans"] == 1
                   else "evaluate on stacks made with the run's interval and sequence length")
            raise DataError(f"{folder} holds {run_data.channels}-channel stacks but the model takes "
                            f"{checkpoint['model']['in_chans']}: {fix}")
        run_data.classes = classes
        dataset = load_split(run_data, split, checkpoint["input"]["image_size"], None, progress)
    except DataError as exc:
        raise TrainError(str(exc)) from exc
    torch_device = resolve_device(device)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(f"cannot write the evaluation into {run_dir}: {exc.strerror or exc}") from exc
    return write_evaluation(model.to(torch_device).to(memory_format=torch.channels_last), dataset, checkpoint,
                            split, run_dir, torch_device, progress)
