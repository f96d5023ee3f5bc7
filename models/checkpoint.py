"""Checkpoints: weights plus everything needed to use them without the training flags.

A checkpoint is a plain dict saved with ``torch.save`` and read back with ``weights_only=True``:
    format, version, model (ModelSettings), input (image size, normalisation), stack (how the
    stacks were made: StackSettings), train (the run's settings), versions, epoch, metrics,
    state_dict; last.pt adds optimizer, scheduler, rng and the loop's history.
"""

from __future__ import annotations

import platform
import zipfile
from pathlib import Path
from typing import Any

import torch

from models.compact import expand_state, is_compact
from models.first_conv import adapt_kernel, first_conv_name
from models.network import EmotionNet, ModelSettings
from models.weights import WeightsError, resolve_checkpoint
from stacks.atomic import atomic_write

FORMAT = "clip-emotion-checkpoint"
VERSION = 1


class CheckpointError(Exception):
    """A file that is not one of our checkpoints, or one that does not fit the run."""


def library_versions() -> dict[str, str]:
    import timm

    return {"python": platform.python_version(), "torch": str(torch.__version__), "timm": str(timm.__version__)}


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomic: an interrupted save never leaves a half-written best.pt or last.pt."""
    data = {"format": FORMAT, "version": VERSION, "versions": library_versions(), **payload}
    if isinstance(payload.get("stack"), dict) and "timing" not in payload:
        # The sequence and interval as seconds: a model made from 30 fps clips serves a 60 fps one alike.
        from stacks.settings import StackSettings

        data["timing"] = StackSettings.from_dict(payload["stack"]).timing()
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # opened here: a path torch cannot open is a RuntimeError, not an OSError
            torch.save(data, fh)

    atomic_write(Path(path), write)


REQUIRED = ("model", "state_dict", "input", "stack")  # what serving, export and --init read


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(_unreadable_reason(path, exc)) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a clip-emotion checkpoint: pass a .pt written by train or export "
                              "(a file of plain backbone weights starts a run with `train --weights`)")
    if data.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer version of this project (checkpoint format "
                              f"{data['version']} > {VERSION}): update the code")
    missing = [key for key in REQUIRED if key not in data]
    if missing:  # else a KeyError from deep inside serving or export
        raise CheckpointError(f"{path} has no {', '.join(missing)} settings, which every checkpoint train and export "
                              "write: a damaged or edited file; write it again with train or export")
    data["path"] = str(path)
    if is_compact(data.get("state_dict", {})):
        data["state_dict"] = expand_state(data["state_dict"])
    return data


def _unreadable_reason(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` refused a file, in words that point at the file rather than at torch's options
    (its own message about ``weights_only`` misleads: the fix is never to load unsafely)."""
    if path.suffix.lower() == ".onnx":
        return (f"{path} is an ONNX export, which predict, live and the journal serve; this command takes the "
                "checkpoint (.pt) or run folder it was exported from")
    if not zipfile.is_zipfile(path):
        return (f"{path} is not a checkpoint: not a file torch.save wrote (those are zip archives), or a "
                "truncated one; pass a .pt written by train or export")
    if "Weights only load failed" in str(exc):
        return (f"{path} holds Python objects besides weights, which are not loaded (loading them could run "
                "code): it was not written by this project's train or export")
    return f"{path} is a damaged checkpoint ({type(exc).__name__}): write it again with train or export"


def model_kind(data: dict[str, Any]) -> str:
    """``frame``: one grey face in, its probabilities pooled over a clip's sampled frames; ``stack``: one
    N-channel stack per sequence. Checkpoints from before the field existed: 1 channel means frame."""
    return str(data.get("kind") or ("frame" if int(data["model"]["in_chans"]) == 1 else "stack"))


def model_from_checkpoint(data: dict[str, Any]) -> EmotionNet:
    """Rebuild the network a checkpoint describes and load its weights (eval mode)."""
    model = EmotionNet(ModelSettings.from_dict(data["model"]))
    model.load_state_dict(data["state_dict"])
    return model.eval()


def init_from_checkpoint(model: EmotionNet, source: Path) -> tuple[str, dict]:
    """Start ``model`` from one of our runs: first conv re-adapted, head kept only where it fits.

    Returns a one-line description of what was carried over (printed by `train`) and the checkpoint's
    input settings, whose normalisation the new run must keep.
    """
    data = load_checkpoint(source)
    theirs = ModelSettings.from_dict(data["model"])
    ours = model.settings
    if theirs.backbone != ours.backbone:
        raise CheckpointError(
            f"--init {source} is a {theirs.backbone} model but this run builds {ours.backbone}: "
            f"pass --backbone {theirs.backbone} or --init a {ours.backbone} run"
        )
    state = dict(data["state_dict"])
    conv_key = f"backbone.{first_conv_name(model.backbone)}.weight"
    state[conv_key] = adapt_kernel(state[conv_key], ours.in_chans)
    head_note = "head kept"
    if theirs.head.hidden != ours.head.hidden or set(theirs.classes) != set(ours.classes):
        # Different classes (or head shape): keep the backbone, start the head fresh.
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        head_note = "new head"
    elif theirs.classes != ours.classes:
        order = [theirs.classes.index(c) for c in ours.classes]
        last = max(int(k.split(".")[1]) for k in state if k.startswith("head."))
        for suffix in ("weight", "bias"):
            state[f"head.{last}.{suffix}"] = state[f"head.{last}.{suffix}"][order]
        head_note = "head kept, classes reordered"
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same names, other shapes
        raise CheckpointError(f"--init {source} does not fit this {ours.backbone} model: {str(exc)[:200]}") from exc
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise CheckpointError(f"--init {source} does not fit this {ours.backbone} model "
                              f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)")
    chans = data["model"]["in_chans"]
    conv_note = f"first conv {chans}->{ours.in_chans} channels" if chans != ours.in_chans else "same channels"
    note = f"initialised from {data['path']} (epoch {data.get('epoch', '?')}; {conv_note}; {head_note})"
    return note, data["input"]


__all__ = ["CheckpointError", "WeightsError", "init_from_checkpoint", "load_checkpoint", "model_from_checkpoint",
           "model_kind", "save_checkpoint"]
