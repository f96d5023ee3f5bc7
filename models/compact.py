"""Int8 storage for the weights of a shipped model: a ResNet-18 is 45 MB in float32, 11 MB this way.

Only storage is compact: every large weight (a conv or linear kernel) is kept as int8 with one float
scale per output channel and expanded back to float32 when loaded, so the network runs exactly as
the float model with weights rounded to 1/127 of each channel's largest value. Biases, norms and
small tensors stay float32.
"""

from __future__ import annotations

import torch

MIN_NUMEL = 4096  # smaller tensors gain nothing worth the rounding
SUFFIX_Q, SUFFIX_SCALE = ".__int8__", ".__scale__"


def compact_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float kernels with 2+ dims -> (int8 values, per-output-channel float scale); others as they are."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.dim() >= 2 and tensor.numel() >= MIN_NUMEL:
            flat = tensor.detach().float().reshape(tensor.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            q = torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8)
            out[name + SUFFIX_Q] = q.reshape(tensor.shape)
            out[name + SUFFIX_SCALE] = scale
        else:
            out[name] = tensor.detach().clone()
    return out


def expand_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ``compact_state``: a plain float state dict that ``load_state_dict`` accepts."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith(SUFFIX_SCALE):
            continue
        if name.endswith(SUFFIX_Q):
            base = name[: -len(SUFFIX_Q)]
            scale = state[base + SUFFIX_SCALE]
            shape = [-1] + [1] * (tensor.dim() - 1)
            out[base] = tensor.float() * scale.reshape(shape)
        else:
            out[name] = tensor
    return out


def is_compact(state: dict[str, torch.Tensor]) -> bool:
    return any(name.endswith(SUFFIX_Q) for name in state)
