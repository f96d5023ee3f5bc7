"""The torch side of serving: a checkpoint as a ``ServingModel``, and the probability graph that export
writes to ONNX. Apart from ``models.served`` so that serving an ONNX file never imports torch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, model_kind
from models.served import ModelLoadError, ServingModel, offsets_from_metadata, settings_from_metadata
from models.weights import WeightsError
from pipeline.train.inference import autocast, class_probabilities, prepare_batch
from stacks.framing import checkpoint_framing
from stacks.settings import InputSettings, StackSettings


class ProbabilityModel(nn.Module):
    """uint8 (N, C, S, S) stacks in, class probabilities out."""

    def __init__(self, net: nn.Module, inputs: InputSettings) -> None:
        super().__init__()
        self.net = net
        self.inputs = inputs

    def forward(self, stacks: torch.Tensor) -> torch.Tensor:
        return class_probabilities(self.net, prepare_batch(stacks, self.inputs, stacks.device), self.inputs)


def serving_metadata(data: dict[str, Any]) -> dict[str, Any]:
    """The settings a served model needs, as stored in a checkpoint (and copied into ONNX exports)."""
    timing = StackSettings.from_dict(data["stack"], data.get("timing")).timing()
    return {"kind": model_kind(data), "model": data["model"], "input": data["input"], "stack": data["stack"],
            "timing": timing, "framing": checkpoint_framing(data), "epoch": data.get("epoch"),
            "metrics": data.get("metrics", {})}


def torch_runner(net: nn.Module, inputs: InputSettings, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    model = ProbabilityModel(net, inputs).to(device).eval()
    model = model.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def run(stacks: np.ndarray) -> np.ndarray:
        with autocast(device):
            return model(torch.from_numpy(np.ascontiguousarray(stacks)).to(device)).cpu().numpy()

    return run


def load_torch(path: Path, device: torch.device | str | None = None) -> ServingModel:
    """``device``: a torch device, or a name as ``--device`` takes it ("auto": the GPU when there is one)."""
    from pipeline.train.parts import TrainError, resolve_device

    if not isinstance(device, torch.device):
        try:
            device = resolve_device(device or "cpu")
        except TrainError as exc:  # no such GPU: said as a model-loading problem, which every caller reports
            raise ModelLoadError(str(exc)) from exc
    try:
        data = load_checkpoint(path)
        net = model_from_checkpoint(data)
    except (CheckpointError, WeightsError) as exc:
        raise ModelLoadError(str(exc)) from exc
    except (KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"{path} is a damaged checkpoint ({type(exc).__name__}: {str(exc)[:150]})") from exc
    meta = serving_metadata(data)
    classes, channels, stack, inputs = settings_from_metadata(meta)
    return ServingModel(meta["kind"], classes, channels, stack, inputs, Path(data["path"]), "torch",
                        torch_runner(net, inputs, device), offsets=offsets_from_metadata(meta))
