"""A trained model ready to serve: torch checkpoint or ONNX file, one interface, settings read from the file.

Both backends take the uint8 stacks that ``stackmaker`` makes and return class probabilities; the
normalisation is training's own ``prepare_batch`` inside ``models.torch_serving.ProbabilityModel``, which
is also the graph exported to ONNX, so neither backend re-types it. This module imports no torch, so serving
an ONNX file (the default) skips its seconds of start-up; ``models.torch_serving`` holds the checkpoint side.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stacks.framing import serving_margin
from stacks.settings import InputSettings, StackSettings

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]
# The model that ships with the project: a frame model, MobileNetV2 from ImageNet weights trained on FER+'s faces
# with its ten annotators' votes (recipe: `make default-model`). The resnet18 models shipped before it stay
# beside it (ferplus_resnet18.pt and its FER2013 stage fer2013_resnet18.pt: `make resnet18-models`).
DEFAULT_MODEL = REPO / "models" / "default" / "ferplus_mobilenetv2.pt"
# The same model as int8 ONNX with a face every 1/3 s (`export --onnx --int8 --serve-interval`). It is what
# predict, live and the journal serve when no --model is given; the checkpoint above stays the model of record
# (evaluate, --init, exports).
SERVED_MODEL = REPO / "models" / "default" / "ferplus_mobilenetv2_int8.onnx"
ONNX_METADATA_KEY = "clip_emotion"


class ModelLoadError(Exception):
    """A model file that is missing, damaged or not ours; the message says what to pass instead."""


@dataclass
class ServingModel:
    """What predict needs: how to make the input (``stack``, ``inputs``), and ``run`` to classify it."""

    kind: str  # "frame" or "stack"
    classes: tuple[str, ...]
    channels: int
    stack: StackSettings
    inputs: InputSettings
    source: Path
    backend: str  # "torch" or "onnx"
    run: Callable[[np.ndarray], np.ndarray]  # uint8 (N, channels, S, S) -> float probabilities (N, K)
    int8: bool = False  # an int8-quantized ONNX model
    offsets: dict[str, float] = dataclasses.field(default_factory=dict)  # `export --logit-offset`, in the weights

    def describe(self) -> str:
        backend = self.backend + (" int8" if self.int8 else "")
        shifted = ", ".join(f"{name} {value:+g}" for name, value in self.offsets.items())
        return (f"{self.kind} model {self.source.name} ({backend}): {len(self.classes)} classes, "
                f"{self.channels} channel(s) at {self.inputs.image_size}px, interval {self.stack.interval}"
                + (", mirror-averaged" if self.inputs.mirror else "")
                + (f", logit offsets {shifted}" if shifted else ""))


def settings_from_metadata(meta: dict[str, Any]) -> tuple[tuple[str, ...], int, StackSettings, InputSettings]:
    """The stack settings are the training stacks', with the margin their crops really had (``framing``).

    Lengths are the seconds the model stored; a model from before they were stored is read at 30 fps."""
    stack = StackSettings.from_dict(meta["stack"], meta.get("timing"))
    stack = dataclasses.replace(stack, margin=serving_margin(stack.margin, meta.get("framing") or {}))
    return (tuple(meta["model"]["classes"]), int(meta["model"]["in_chans"]), stack, InputSettings(**meta["input"]))


def load_onnx(path: Path, threads: int = 0) -> ServingModel:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a base requirement
        raise ModelLoadError("onnxruntime is not installed: pip install -r requirements.txt") from exc
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:150]
        raise ModelLoadError(f"{path} is not a readable ONNX model ({first})") from exc
    raw = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    if raw is None:
        raise ModelLoadError(f"{path} is an ONNX model but not one exported by `cli.py export` "
                             "(it carries no preprocessing settings)")
    try:
        meta = json.loads(raw)
        classes, channels, stack, inputs = settings_from_metadata(meta)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: its preprocessing settings are damaged ({type(exc).__name__}: {exc})") from exc
    name = session.get_inputs()[0].name

    def run(stacks: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(stacks, dtype=np.uint8)})[0]

    return ServingModel(meta["kind"], classes, channels, stack, inputs, Path(path), "onnx", run, bool(meta.get("int8")),
                        offsets_from_metadata(meta))


def offsets_from_metadata(meta: dict[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in (meta["model"].get("logit_offsets") or {}).items()}


def device_name_error(name: str) -> str | None:
    """The advice for a ``--device`` that names no device torch has, or None (said before a model is chosen,
    so that a misspelt device is not reported as a device an ONNX model cannot use)."""
    if name in ("auto", "cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", name):
        return None
    return f"unknown --device {name!r}: use auto, cpu, cuda, cuda:N or mps"


def load_serving_model(path: Path | None = None, device: torch.device | str | None = None) -> ServingModel:
    """``path``: a run folder, a checkpoint (.pt), an ONNX export, or None for the shipped default (its int8
    serving form when present). ``device`` (a checkpoint's; "auto", "cpu", "cuda", ...): an ONNX file runs
    on the CPU."""
    if path is None:
        path = SERVED_MODEL if SERVED_MODEL.is_file() else DEFAULT_MODEL
    path = Path(path)
    if not path.exists():
        hint = ("the default model is missing from this checkout: rebuild it with `make default-model` "
                "or pass --model RUN_DIR" if path == DEFAULT_MODEL else "pass a run folder, a .pt checkpoint or "
                "an .onnx export")
        raise ModelLoadError(f"model {path} does not exist; {hint}")
    if device is not None and (error := device_name_error(str(device))):
        raise ModelLoadError(error)
    if path.suffix.lower() == ".onnx":
        if device is not None and str(device) not in ("auto", "cpu"):
            raise ModelLoadError(f"{path} is an ONNX model, which onnxruntime runs on the CPU: drop --device "
                                 f"{device}, or pass a .pt checkpoint (the default's is {DEFAULT_MODEL})")
        return load_onnx(path)
    from models.torch_serving import load_torch

    return load_torch(path, device)
