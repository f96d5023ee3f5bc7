"""Adapting a first convolution's kernels from one input channel count to another.

Method (the seed's, with its scale fixed): every new input channel gets the *sum* of the old
input kernels divided by the new channel count. A stack of C identical grey frames then gives
exactly the response that the RGB model gives to that grey image (R = G = B = grey):
    sum_i W_rgb_i * g  ==  sum_j (sum_i W_rgb_i / C) * g.
The seed used the plain mean repeated C times, which multiplies activations by C/3 (6x at 18
channels) and throws BatchNorm statistics of pretrained weights off. The same rule re-adapts our own
checkpoints (1-channel face-image model -> 18-channel clip model) when ``--init`` needs it.
"""

from __future__ import annotations

import torch
from torch import nn


def adapt_kernel(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """(out, c_old, kh, kw) -> (out, in_chans, kh, kw), response to identical inputs preserved."""
    if weight.ndim != 4:
        raise ValueError(f"expected a conv kernel (out, in, kh, kw), got shape {tuple(weight.shape)}")
    if weight.shape[1] == in_chans:
        return weight.clone()
    summed = weight.sum(dim=1, keepdim=True)
    return (summed / in_chans).repeat(1, in_chans, 1, 1).contiguous()


def first_conv_name(model: nn.Module) -> str:
    """Dotted name of the first conv (timm records it in each model's pretrained config)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("first_conv")
    if isinstance(name, (list, tuple)):
        name = name[0]
    if name:
        return name
    for key, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return key
    raise ValueError("model has no Conv2d")
