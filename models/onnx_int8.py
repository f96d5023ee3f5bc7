"""An exported ONNX model with int8 weights and activations, for onnxruntime on a CPU.

A served clip's time is mostly the network (24 faces, each also mirrored, on a 4 s clip); int8
convolutions run it ~4x faster on this CPU (AVX-512 VNNI) than float32. Static quantization needs
the activation ranges of real inputs: ``calibration_faces`` reads face images of the kind the model
was trained on (FER2013's training faces for the shipped model), resized as training resized them.
The preprocessing settings stored in the float model travel with the int8 one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from stacks.atomic import atomic_write
from stacks.settings import IMAGE_EXTENSIONS


class QuantizeError(Exception):
    """Nothing to calibrate with, or a model that cannot be quantized; one line for the user."""


def calibration_faces(folder: Path, size: int, count: int = 256, seed: int = 0) -> np.ndarray:
    """``count`` grey face images from ``folder`` (any depth), drawn at random, as (count, 1, size, size) uint8."""
    if not Path(folder).is_dir():
        raise QuantizeError(f"--int8 {folder}: no such folder; give a folder of face images (png/jpg, any depth)")
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise QuantizeError(f"--int8 {folder}: no face images there to calibrate with (png/jpg, any depth)")
    rng = np.random.default_rng(seed)
    picked = [paths[i] for i in sorted(rng.choice(len(paths), size=min(count, len(paths)), replace=False))]
    faces = []
    for path in picked:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            continue
        interpolation = cv2.INTER_AREA if min(grey.shape) > size else cv2.INTER_LINEAR
        faces.append(cv2.resize(grey, (size, size), interpolation=interpolation))
    if not faces:
        raise QuantizeError(f"--int8 {folder}: none of the images could be read")
    return np.stack(faces)[:, None]


def quantize_onnx(float_model: Path, out: Path, calibration: np.ndarray) -> None:
    """Write ``out``: ``float_model`` with int8 convolutions and matmuls (per-channel weights), calibrated
    on ``calibration`` (uint8 inputs as the model takes them); its metadata is copied over."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(float_model), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Faces(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{name: calibration[i:i + 16]} for i in range(0, len(calibration), 16)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(str(prepared), str(quantized), Faces(), quant_format=QuantFormat.QOperator,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"])
        graph = onnx.load(str(quantized))
        del graph.metadata_props[:]
        for prop in onnx.load(str(float_model)).metadata_props:
            entry = graph.metadata_props.add()
            entry.key, entry.value = prop.key, prop.value
        atomic_write(Path(out), lambda path: onnx.save(graph, str(path)))
