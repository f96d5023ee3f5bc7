"""Running a model over a StackDataset: the code train (validation), evaluate and benchmarks share."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pipeline.train.augment import normalise, to_unit
from stacks.dataset import StackDataset
from stacks.settings import InputSettings


def autocast(device: torch.device, bf16: bool | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast (fast, and safe without a loss scaler) or full precision.

    ``bf16=None`` means the inference default: bf16 on CUDA, full precision elsewhere.
    """
    if bf16 is None:
        bf16 = device.type == "cuda"
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_batch(batch: torch.Tensor, inputs: InputSettings, device: torch.device) -> torch.Tensor:
    """uint8 stacks -> normalised float input, channels_last (faster convolutions on CPU and GPU)."""
    x = normalise(to_unit(batch, device), inputs.mean, inputs.std)
    return x.contiguous(memory_format=torch.channels_last)


def class_probabilities(net: nn.Module, x: torch.Tensor, inputs: InputSettings) -> torch.Tensor:
    """Softmax of the network on a prepared batch; with ``inputs.mirror``, averaged with the mirror image's.

    The input and its mirror go through the network as one batch of 2N (eval mode: nothing mixes
    across the batch). Faces are left-right symmetric in what they express, and the two views' errors
    are partly independent: +1.1 points on FER2013 PrivateTest for the 48 px model.
    """
    if not inputs.mirror:
        return torch.softmax(net(x).float(), dim=1)
    both = torch.softmax(net(torch.cat([x, torch.flip(x, dims=[3])])).float(), dim=1)
    return both.reshape(2, -1, both.shape[1]).mean(dim=0)  # a reshape, not len(x): ONNX keeps the batch dynamic


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: StackDataset, inputs: InputSettings, device: torch.device,
                   batch_size: int = 64, progress: bool = False, desc: str = "evaluate") -> tuple[np.ndarray, float]:
    """(logits (N, K) float32, mean cross-entropy) over the whole dataset, in order.

    With ``inputs.mirror`` the "logits" are the log of the averaged probabilities, so that the
    metrics and the loss are those of the model as served. ``progress``: a bar per batch (`evaluate` on
    FER+ test sat a minute without a word after loading).
    """
    model.eval()
    out, total = [], 0.0
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, unit="batch", disable=not progress,
                      leave=False):
        images, labels = dataset[list(range(start, min(start + batch_size, len(dataset))))]
        with autocast(device):
            x = prepare_batch(images, inputs, device)
            if inputs.mirror:
                logits = torch.log(class_probabilities(model, x, inputs).clamp_min(1e-12))
            else:
                logits = model(x).float()
        total += F.cross_entropy(logits, labels.to(device), reduction="sum").item()
        out.append(logits.cpu().numpy())
    return np.concatenate(out), total / max(1, len(dataset))
