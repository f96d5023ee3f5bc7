"""face-api.js's expression model (npm @vladmandic/face-api 1.7.15, MIT) run in torch: the peer to beat.

The strongest offline peer we know of: a 310 KB network whose weights ship inside the npm package
(``model/face_expression_model.bin`` + ``model/face_expression_model-weights_manifest.json``,
uint8-quantised: value = q * scale + min). ``make bench-deps`` (and ``make test``) fetch it with
``npm pack`` into ``data/peers/`` (ignored by git).

The graph is face-api's ``FaceExpressionNet``: four dense blocks (``denseBlock4``: a stride-2 conv,
plain for the first block and depthwise-separable after, then three separable convs whose inputs are
the running sums of the earlier outputs), a 7x7 average pool, a 256 -> 7 linear layer and a softmax.
Convolutions pad like TensorFlow's 'same' (the odd pixel after). Input: an RGB face, 0-255, padded to
a square with zeros (centred: an odd row or column goes after), resized to 112x112 with tfjs's
``resizeBilinear`` (no half-pixel centres), minus the mean (122.782, 117.001, 104.298), divided by 255.
Output order: neutral, happy, sad, angry, fearful, disgusted, surprised.

The port is checked against face-api.js itself: ``--record`` runs face-api's own network on the pure-JS
``@tensorflow/tfjs`` in Node (``faceapi_reference.mjs``) on the inputs of ``reference_inputs`` and stores
the outputs in ``faceapi_reference.json``; ``tests/test_faceapi_reference.py`` compares this module
with them.

    python benchmarks/faceapi_reference.py            compare with the stored reference
    python benchmarks/faceapi_reference.py --record   rerun face-api.js in Node and store its outputs (npm)
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
VERSION = "1.7.15"
PACKAGE = f"@vladmandic/face-api@{VERSION}"
TFJS = "@tensorflow/tfjs@4.22.0"  # the tfjs face-api 1.7.15 was built against (dist/tfjs.version.js)
MODEL_DIR = REPO / "data" / "peers" / f"face-api-{VERSION}" / "model"
WEIGHTS = "face_expression_model.bin"
MANIFEST = "face_expression_model-weights_manifest.json"
REFERENCE = Path(__file__).with_name("faceapi_reference.json")
CLASSES: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
_BYTES = {"uint8": 1, "float32": 4}


class FaceApiError(Exception):
    """The face-api.js model files are missing or not what this port reads (one line)."""


def read_weights(model_dir: Path = MODEL_DIR) -> dict[str, np.ndarray]:
    """Every tensor of the weights file by name, dequantised (q * scale + min) to float32, in tfjs's layout."""
    manifest_path, bin_path = Path(model_dir) / MANIFEST, Path(model_dir) / WEIGHTS
    if not manifest_path.is_file() or not bin_path.is_file():
        raise FaceApiError(f"face-api.js's expression model is not in {model_dir}: run `make bench-deps` "
                           f"(npm pack {PACKAGE})")
    groups = json.loads(manifest_path.read_text())
    data = bin_path.read_bytes()
    weights, offset = {}, 0
    for spec in (w for group in groups for w in group["weights"]):
        quant = spec.get("quantization")
        dtype = quant["dtype"] if quant else spec["dtype"]
        if dtype not in _BYTES or spec["dtype"] != "float32":
            raise FaceApiError(f"{manifest_path}: {spec['name']} is stored as {dtype}, which this port does not read")
        count = int(np.prod(spec["shape"])) if spec["shape"] else 1
        size = count * _BYTES[dtype]
        raw = np.frombuffer(data, dtype=np.uint8 if dtype == "uint8" else "<f4", count=count, offset=offset)
        values = raw.astype(np.float32) * quant["scale"] + quant["min"] if quant else raw.astype(np.float32)
        weights[spec["name"]] = values.reshape(spec["shape"]).astype(np.float32)
        offset += size
    if offset != len(data):
        raise FaceApiError(f"{bin_path} holds {len(data)} bytes but its manifest describes {offset}")
    return weights


def _same_pad(x: torch.Tensor, stride: int, kernel: int = 3) -> torch.Tensor:
    """TensorFlow's 'same' padding: the total is split with the odd pixel after (bottom, right)."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SeparableConv(nn.Module):
    """tf.separableConv2d(x, depthwise, pointwise, stride, 'same') + bias."""

    def __init__(self, w: dict[str, np.ndarray], prefix: str, stride: int) -> None:
        super().__init__()
        depthwise = torch.from_numpy(w[f"{prefix}/depthwise_filter"]).permute(2, 3, 0, 1)  # (C, 1, 3, 3)
        pointwise = torch.from_numpy(w[f"{prefix}/pointwise_filter"]).permute(3, 2, 0, 1)  # (O, C, 1, 1)
        self.register_buffer("depthwise", depthwise.contiguous())
        self.register_buffer("pointwise", pointwise.contiguous())
        self.register_buffer("bias", torch.from_numpy(w[f"{prefix}/bias"]))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(_same_pad(x, self.stride), self.depthwise, stride=self.stride, groups=x.shape[1])
        return F.conv2d(x, self.pointwise, self.bias)


class PlainConv(nn.Module):
    """tf.conv2d(x, filters, stride, 'same') + bias (the first block's first conv)."""

    def __init__(self, w: dict[str, np.ndarray], prefix: str, stride: int) -> None:
        super().__init__()
        self.register_buffer("filters", torch.from_numpy(w[f"{prefix}/filters"]).permute(3, 2, 0, 1).contiguous())
        self.register_buffer("bias", torch.from_numpy(w[f"{prefix}/bias"]))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(_same_pad(x, self.stride), self.filters, self.bias, stride=self.stride)


class DenseBlock4(nn.Module):
    """face-api's denseBlock4: each conv sees the ReLU of the sum of all earlier outputs of the block."""

    def __init__(self, w: dict[str, np.ndarray], prefix: str, first: bool) -> None:
        super().__init__()
        self.conv0 = PlainConv(w, f"{prefix}/conv0", 2) if first else SeparableConv(w, f"{prefix}/conv0", 2)
        self.convs = nn.ModuleList(SeparableConv(w, f"{prefix}/conv{i}", 1) for i in (1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.relu(self.conv0(x))
        x = total
        for conv in self.convs:
            total = total + conv(x)
            x = torch.relu(total)
        return x


class FaceExpressionNet(nn.Module):
    """(N, 3, 112, 112) normalised RGB -> (N, 7) probabilities in ``CLASSES`` order."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(DenseBlock4(weights, f"dense{i}", first=i == 0) for i in range(4)))
        self.register_buffer("fc_weights", torch.from_numpy(weights["fc/weights"]))  # (256, 7)
        self.register_buffer("fc_bias", torch.from_numpy(weights["fc/bias"]))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The 7 scores before the softmax (face-api's ``runNet``)."""
        return F.avg_pool2d(self.blocks(x), 7, 2).flatten(1) @ self.fc_weights + self.fc_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def pad_to_square(rgb: np.ndarray) -> np.ndarray:
    """face-api's padToSquare(centred): zeros on both sides of the short axis, an odd one after."""
    h, w = rgb.shape[:2]
    diff = abs(h - w)
    if diff == 0:
        return rgb
    after = int(np.floor(diff * 0.5 + 0.5))  # JavaScript's Math.round: .5 goes up
    before = diff - after
    pads = ((before, after), (0, 0), (0, 0)) if h < w else ((0, 0), (before, after), (0, 0))
    return np.pad(rgb, pads)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """tf.image.resizeBilinear(x, [size, size], alignCorners=false, halfPixelCenters=false), float32."""
    image = image.astype(np.float32)
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(size, dtype=np.float64) * (n / size)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, n - 1), (src - low).astype(np.float32)

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * fx[None, :, None]
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * fx[None, :, None]
    return top + (bottom - top) * fy[:, None, None]


def preprocess(faces: list[np.ndarray]) -> torch.Tensor:
    """RGB uint8 face crops of any shape -> the network's (N, 3, 112, 112) input, as face-api makes it."""
    batch = np.stack([resize_bilinear(pad_to_square(face), INPUT_SIZE) for face in faces])
    batch = (batch - np.array(MEAN_RGB, dtype=np.float32)) / 255.0
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32))


class FaceApiExpression:
    """The loaded model: ``probs(rgb_faces)`` -> (N, 7) probabilities in ``CLASSES`` order."""

    classes = CLASSES

    def __init__(self, model_dir: Path = MODEL_DIR) -> None:
        self.net = FaceExpressionNet(read_weights(model_dir)).eval()

    @torch.no_grad()
    def probs(self, faces: list[np.ndarray]) -> np.ndarray:
        if not faces:
            return np.zeros((0, len(CLASSES)), dtype=np.float32)
        return self.net(preprocess(faces)).numpy()

    @torch.no_grad()
    def logits(self, faces: list[np.ndarray]) -> np.ndarray:
        return self.net.logits(preprocess(faces)).numpy()


# ------------------------------------------------------------------------------------------ reference


def _astronaut_face() -> np.ndarray:
    """A 112x112 RGB face: scikit-image's astronaut photo (public domain), cropped around her face."""
    from tests.fixtures.clips import astronaut_head

    return cv2.resize(astronaut_head()[64:180, 165:281], (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)


def reference_inputs() -> dict[str, np.ndarray]:
    """The inputs of the recorded reference, made the same way every time (HxWx3 uint8 RGB)."""
    face = _astronaut_face()
    yy, xx, cc = np.mgrid[0:INPUT_SIZE, 0:INPUT_SIZE, 0:3]
    return {
        "astronaut_face": face,
        "astronaut_face_mirrored": np.ascontiguousarray(face[:, ::-1]),
        "astronaut_face_rows_14_to_99": np.ascontiguousarray(face[14:99]),  # 85x112: padded, not resized
        "astronaut_face_150px": cv2.resize(face, (150, 150), interpolation=cv2.INTER_LINEAR),  # resized by tfjs
        "pattern": ((xx * 7 + yy * 13 + cc * 50) % 256).astype(np.uint8),
    }


INPUT_RECIPES = {
    "astronaut_face": "skimage.data.astronaut() -> tests.fixtures.clips.astronaut_head() -> rows 64:180, columns "
                      "165:281 -> cv2.resize to 112x112, INTER_AREA (RGB uint8)",
    "astronaut_face_mirrored": "astronaut_face flipped left-right",
    "astronaut_face_rows_14_to_99": "astronaut_face rows 14:99 (85x112): face-api pads it to 112x112",
    "astronaut_face_150px": "astronaut_face -> cv2.resize to 150x150, INTER_LINEAR: face-api resizes it to 112",
    "pattern": "pixel (y, x, channel c) = (7x + 13y + 50c) mod 256, 112x112x3 uint8",
}


def record_reference(model_dir: Path = MODEL_DIR, out: Path = REFERENCE) -> dict:
    """Run face-api.js's own network in Node (pure-JS tfjs, CPU backend) and store its outputs with the inputs."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise FaceApiError("--record needs node and npm on the PATH")
    inputs = reference_inputs()
    with tempfile.TemporaryDirectory(prefix="faceapi_node_") as tmp:
        work = Path(tmp)
        (work / "package.json").write_text('{"private": true}\n')
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", TFJS,
                        "@tensorflow/tfjs-backend-wasm@4.22.0", PACKAGE], cwd=work, check=True,
                       stdout=subprocess.DEVNULL)
        payload = [{"name": name, "height": int(a.shape[0]), "width": int(a.shape[1]),
                    "pixels": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()}
                   for name, a in inputs.items()]
        (work / "inputs.json").write_text(json.dumps(payload))
        script = Path(__file__).with_name("faceapi_reference.mjs")
        subprocess.run(["node", str(script), str(Path(model_dir).resolve()), "inputs.json", "outputs.json"],
                       cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = json.loads((work / "outputs.json").read_text())
    reference = {
        "what": f"face-api.js {PACKAGE} FaceExpressionNet.forward on {result['backend']} backend of "
                f"@tensorflow/tfjs {result['tfjs']} in Node (benchmarks/faceapi_reference.mjs)",
        "classes": list(CLASSES),
        "inputs": INPUT_RECIPES,
        "input_sha256": {name: _sha256(a) for name, a in inputs.items()},
        "outputs": result["outputs"],
    }
    out.write_text(json.dumps(reference, indent=1) + "\n")
    return reference


def _sha256(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def compare_with_reference(model: FaceApiExpression, reference: dict) -> dict[str, tuple[float, float]]:
    """(largest |logit difference|, largest |probability difference|) from face-api.js's output, per input."""
    inputs = reference_inputs()
    return {name: (float(np.abs(model.logits([inputs[name]])[0] - np.array(expected["logits"])).max()),
                   float(np.abs(model.probs([inputs[name]])[0] - np.array(expected["probs"])).max()))
            for name, expected in reference["outputs"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR, help="face-api's model/ folder")
    parser.add_argument("--record", action="store_true", help="rerun face-api.js in Node and store its outputs")
    args = parser.parse_args()
    try:
        if args.record:
            record_reference(args.model_dir)
            print(f"recorded {REFERENCE}")
        model = FaceApiExpression(args.model_dir)
    except (FaceApiError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"faceapi_reference: {exc}") from exc
    reference = json.loads(REFERENCE.read_text())
    for name, (logits, probs) in compare_with_reference(model, reference).items():
        top = CLASSES[int(np.argmax(reference["outputs"][name]["probs"]))]
        print(f"{name:<30} face-api.js: {top:<9} max |torch - face-api.js|: logits {logits:.1e}, "
              f"probabilities {probs:.1e}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
