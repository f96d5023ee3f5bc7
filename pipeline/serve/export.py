"""`cli.py export`: a run's best checkpoint as an ONNX model (with its preprocessing settings inside)
or as a compact int8 checkpoint (how the default model ships)."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import save_checkpoint
from models.compact import compact_state
from models.served import ONNX_METADATA_KEY
from models.torch_serving import ProbabilityModel, serving_metadata
from models.weights import WeightsError, resolve_checkpoint
from pipeline.checkpoints import read_checkpoint, rebuild_model
from stacks.atomic import atomic_write
from stacks.settings import InputSettings

OPSET = 17


class ExportError(Exception):
    """The run cannot be exported; the message says why."""


# predict --model tells an ONNX file by its suffix; any other file is read as a checkpoint
OUTPUT_SUFFIXES = {"--onnx": (".onnx",), "--compact": (".pt", ".pth")}


def check_outputs(run: Path, outputs: dict[str, Path | None], suffixes: bool = True) -> None:
    """Refuse, before anything is written, an output that would replace the checkpoint being read or a
    run's own best.pt/last.pt (a compact file cannot be resumed from), or (``suffixes``: the CLI's files,
    not a caller's temporary name) whose suffix would make ``predict --model`` read it as the other kind.
    ``outputs``: flag -> file."""
    try:
        source = resolve_checkpoint(run).resolve()
    except WeightsError as exc:
        raise ExportError(str(exc)) from None
    chosen = {flag: Path(out) for flag, out in outputs.items() if out is not None}
    for flag, out in chosen.items():
        if suffixes and out.suffix.lower() not in OUTPUT_SUFFIXES[flag]:
            raise ExportError(f"{flag} writes a {' or '.join(OUTPUT_SUFFIXES[flag])} file (predict --model tells "
                              f"the kinds apart by the suffix): got {out}")
        if out.resolve() == source:
            raise ExportError(f"{flag} {out} is the checkpoint being exported: write the export to another file")
        if out.name in ("best.pt", "last.pt") and (out.parent / "config.json").is_file():
            raise ExportError(f"{flag} {out} would replace a run's own checkpoint (train --resume and evaluate "
                              "read it): write the export to another file")


def _load(run: Path, mirror: bool | None = None, offsets: dict[str, float] | None = None,
          ) -> tuple[dict, torch.nn.Module]:
    """The checkpoint and its network; a damaged one is an ExportError, not a traceback.

    ``mirror``: serve with mirror averaging (``InputSettings.mirror``) or not; None keeps the checkpoint's.
    ``offsets``: added to those classes' logits (``shift_logits``).
    """
    data = read_checkpoint(run, ExportError)
    if mirror is not None:
        if not isinstance(data.get("input"), dict):
            raise ExportError(f"{run} is a damaged checkpoint (no input settings)")
        data["input"] = {**data["input"], "mirror": mirror}
    net = rebuild_model(data, ExportError)
    if offsets:
        shift_logits(data, net, offsets)
    return data, net


def shift_logits(data: dict, net: torch.nn.Module, offsets: dict[str, float]) -> None:
    """Add ``offsets`` to the named classes' logits, in the last layer's bias, so every served form
    (torch, ONNX, int8) carries them with no code of its own; the sum so far is recorded in the
    checkpoint's model settings (``logit_offsets``).

    What it is for: moving the line between classes where the faces served are labelled by another
    convention than the training faces (FER+'s majority calls a faintly sad face neutral; people
    labelling real photos call it sad), fitted on held-out real faces."""
    classes = list(data["model"]["classes"])
    unknown = sorted(set(offsets) - set(classes))
    if unknown:
        raise ExportError(f"--logit-offset: the model has no class {', '.join(unknown)} (its classes: "
                          f"{', '.join(classes)})")
    last = net.head[-1] if isinstance(getattr(net, "head", None), torch.nn.Sequential) else None
    if not isinstance(last, torch.nn.Linear) or last.bias is None or last.out_features != len(classes):
        raise ExportError("--logit-offset needs a model whose head ends in a linear layer with a bias")
    with torch.no_grad():
        for name, value in offsets.items():
            last.bias[classes.index(name)] += float(value)
    data["state_dict"] = net.state_dict()
    total = dict(data["model"].get("logit_offsets") or {})
    for name, value in offsets.items():
        total[name] = round(total.get(name, 0.0) + float(value), 6)
    data["model"] = {**data["model"], "logit_offsets": {k: v for k, v in total.items() if v}}


def export_onnx(run: Path, out: Path, mirror: bool | None = None, int8: Path | None = None,
                serve_interval: float | None = None, offsets: dict[str, float] | None = None) -> dict:
    """Write the uint8-stacks -> probabilities graph; returns the settings stored beside it.

    ``int8``: a folder of face images to calibrate an int8 model on (``quantize``): ~4x faster on a CPU.
    ``serve_interval``: a frame model samples a face every this many seconds when served (it has no
    channels tied to the interval, so that is a serving choice: fewer faces, less time).
    """
    import onnx

    check_outputs(run, {"--onnx": out}, suffixes=False)
    data, net = _load(run, mirror, offsets)
    if int8 is not None and int(data["model"]["in_chans"]) != 1:
        raise ExportError(f"--int8 calibrates on single face images, so it is for frame models; {run} takes "
                          f"{data['model']['in_chans']}-channel stacks: export it without --int8")
    meta = {**serving_metadata(data), "int8": int8 is not None}
    if serve_interval is not None:
        if meta["kind"] != "frame":
            raise ExportError("--serve-interval is for frame models: a stack model's interval is its channels' spacing")
        if not 1 / 30 <= serve_interval <= meta["timing"]["sequence_seconds"]:
            raise ExportError(f"--serve-interval must be between 1/30 s and the sequence, "
                              f"{meta['timing']['sequence_seconds']:g} s (got {serve_interval:g})")
        meta["timing"] = {**meta["timing"], "interval_seconds": round(serve_interval, 6)}
    inputs = InputSettings(**data["input"])
    model = ProbabilityModel(net, inputs).eval()
    channels, size = int(data["model"]["in_chans"]), inputs.image_size
    example = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, channels, size, size), dtype=np.uint8))

    def write(tmp: Path) -> None:
        # The TorchScript exporter (deprecated, still shipped): the torch.export one needs the onnxscript
        # package, which nothing else here needs (the protobuf<5 pin that once kept it out is gone).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (example,), str(tmp), input_names=["stacks"], output_names=["probabilities"],
                              dynamic_axes={"stacks": {0: "batch"}, "probabilities": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
        graph = onnx.load(str(tmp))
        entry = graph.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(meta)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))

    if int8 is None:
        atomic_write(Path(out), write)
        return meta
    from models.onnx_int8 import QuantizeError, calibration_faces, quantize_onnx

    try:
        faces = calibration_faces(int8, size)
    except QuantizeError as exc:
        raise ExportError(str(exc)) from exc
    meta["calibration_images"] = len(faces)  # stored with the model: what its int8 ranges were fitted on
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp) / "float.onnx")
        quantize_onnx(Path(tmp) / "float.onnx", Path(out), faces)
    return meta


def export_compact(run: Path, out: Path, mirror: bool | None = None, offsets: dict[str, float] | None = None,
                   ) -> dict:
    """Everything a served model needs, weights as int8 (``models.compact``), no optimizer state."""
    check_outputs(run, {"--compact": out}, suffixes=False)
    data, _ = _load(run, mirror, offsets)
    keep = ("model", "kind", "input", "stack", "timing", "epoch", "metrics", "train")
    payload = {k: data[k] for k in keep if k in data}
    meta = serving_metadata(data)
    payload["kind"], payload["framing"] = meta["kind"], meta["framing"]
    payload["state_dict"] = compact_state(data["state_dict"])
    save_checkpoint(Path(out), payload)
    return payload
