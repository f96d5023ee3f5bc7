"""A trained model ready to serve: torch checkpoint or ONNX file, one interface, settings read from the file.

Both backends take the uint8 stacks that ``stackmaker`` makes and return class probabilities; the
normalisation is training's own ``prepare_batch`` inside ``ProbabilityModel``, which is also the
graph exported to ONNX, so neither backend re-types it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, model_kind
from models.weights import WeightsError
from pipeline.train.inference import autocast, class_probabilities, prepare_batch
from stacks.framing import checkpoint_framing, serving_margin
from stacks.settings import InputSettings, StackSettings

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


class ProbabilityModel(nn.Module):
    """uint8 (N, C, S, S) stacks in, class probabilities out."""

    def __init__(self, net: nn.Module, inputs: InputSettings) -> None:
        super().__init__()
        self.net = net
        self.inputs = inputs

    def forward(self, stacks: torch.Tensor) -> torch.Tensor:
        return class_probabilities(self.net, prepare_batch(stacks, self.inputs, stacks.device), self.inputs)


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


def serving_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """The settings a served model needs, as stored in a checkpoint (and copied into ONNX exports)."""
    timing = StackSettings.from_dict(data["stack"], data.get("timing")).timing()
    return {"kind": model_kind(data), "model": data["model"], "input": data["input"], "stack": data["stack"],
            "timing": timing, "framing": checkpoint_framing(data), "epoch": data.get("epoch"),
            "metrics": data.get("metrics", {})}


def _settings(meta: dict[str, Any]) -> tuple[tuple[str, ...], int, StackSettings, InputSettings]:
    """The stack settings are the training stacks', with the margin their crops really had (``framing``).

    Lengths are the seconds the model stored; a model from before they were stored is read at 30 fps."""
    stack = StackSettings.from_dict(meta["stack"], meta.get("timing"))
    stack = dataclasses.replace(stack, margin=serving_margin(stack.margin, meta.get("framing") or {}))
    return (tuple(meta["model"]["classes"]), int(meta["model"]["in_chans"]), stack, InputSettings(**meta["input"]))


def torch_runner(net: nn.Module, inputs: InputSettings, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    model = ProbabilityModel(net, inputs).to(device).eval()
    model = model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def run(stacks: np.ndarray) -> np.ndarray:
        with autocast(device):
            return model(torch.from_numpy(np.ascontiguousarray(stacks)).to(device)).cpu().numpy()

    return run


def load_torch(path: Path, device: torch.device) -> ServingModel:
    try:
        data = load_checkpoint(path)
        net = model_from_checkpoint(data)
    except (CheckpointError, WeightsError) as exc:
        raise ModelLoadError(str(exc)) from exc
    except (KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"{path} is a damaged checkpoint ({type(exc).__name__}: {str(exc)[:150]})") from exc
    meta = serving_metadata(data)
    classes, channels, stack, inputs = _settings(meta)
    return ServingModel(meta["kind"], classes, channels, stack, inputs, Path(data["path"]), "torch",
                        torch_runner(net, inputs, device), offsets=_offsets(meta))


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
        classes, channels, stack, inputs = _settings(meta)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: its preprocessing settings are damaged ({type(exc).__name__}: {exc})") from exc
    name = session.get_inputs()[0].name

    def run(stacks: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(stacks, dtype=np.uint8)})[0]

    return ServingModel(meta["kind"], classes, channels, stack, inputs, Path(path), "onnx", run, bool(meta.get("int8")),
                        _offsets(meta))


def _offsets(meta: dict[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in (meta["model"].get("logit_offsets") or {}).items()}


def load_serving_model(path: Path | None = None, device: torch.device | None = None) -> ServingModel:
    """``path``: a run folder, a checkpoint (.pt), an ONNX export, or None for the shipped default (its int8
    serving form when present)."""
    if path is None:
        path = SERVED_MODEL if SERVED_MODEL.is_file() else DEFAULT_MODEL
    path = Path(path)
    if not path.exists():
        hint = ("the default model is missing from this checkout: rebuild it with `make default-model` "
                "or pass --model RUN_DIR" if path == DEFAULT_MODEL else "pass a run folder, a .pt checkpoint or "
                "an .onnx export")
        raise ModelLoadError(f"model {path} does not exist; {hint}")
    if path.suffix.lower() == ".onnx":
        return load_onnx(path)
    return load_torch(path, device or torch.device("cpu"))
