"""Model-only time per clip of served models, side by side in one run: is a candidate no slower than the shipped one?

`predict` spends most of a clip's time in the network: every sampled face (a 4 s clip at the served
interval of 1/3 s gives 12), each also mirrored when the model averages mirror images. This times only
``ServingModel.run`` on one clip's faces, already cropped and resized to each model's own input size,
so that decoding and face finding (the same for every model) do not dilute the difference. Each
repeat runs every model once, the order rotating, and the table gives the median seconds per clip and
the ratio to the first model.

    python benchmarks/model_speed.py MODEL [MODEL ...] [--faces 12] [--repeats 30] [--threads 1]

A MODEL is anything `predict --model` takes: a run folder, a .pt checkpoint or an .onnx export.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.served import ModelLoadError, ServingModel, load_onnx, load_serving_model  # noqa: E402


def load(path: Path, threads: int) -> ServingModel:
    return load_onnx(path, threads) if path.suffix.lower() == ".onnx" else load_serving_model(path)


def clip_faces(model: ServingModel, faces: int, seed: int = 0) -> np.ndarray:
    """One clip's faces as the model takes them: (faces, channels, size, size) uint8."""
    size = model.inputs.image_size
    channels = model.channels if model.kind == "stack" else 1
    return np.random.default_rng(seed).integers(0, 256, (faces, channels, size, size), dtype=np.uint8)


def measure(models: list[ServingModel], faces: int, repeats: int) -> list[list[float]]:
    """Seconds of ``run`` on one clip's faces, per model, over ``repeats`` rotating rounds (after a warm-up)."""
    inputs = [clip_faces(m, faces) for m in models]
    for model, x in zip(models, inputs):
        model.run(x)
    times: list[list[float]] = [[] for _ in models]
    for r in range(repeats):
        order = list(range(len(models)))
        order = order[r % len(order):] + order[:r % len(order)]
        for i in order:
            t0 = time.perf_counter()
            models[i].run(inputs[i])
            times[i].append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="served models; the first is the reference")
    parser.add_argument("--faces", type=int, default=12, help="faces per clip (a 4 s clip at 1/3 s: 12)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch / onnxruntime threads (shared CPU)")
    args = parser.parse_args()
    if args.faces < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--faces, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    try:
        models = [load(p, args.threads) for p in args.models]
    except ModelLoadError as exc:
        raise SystemExit(f"model_speed: {exc}") from exc
    times = measure(models, args.faces, args.repeats)
    medians = [statistics.median(t) for t in times]
    print(f"model-only time per clip: {args.faces} faces, {args.repeats} rounds, {args.threads} thread(s)")
    print(f"{'model':<60}{'input':>8}{'mirror':>8}{'median s':>10}{'ratio':>8}")
    for path, model, median in zip(args.models, models, medians):
        print(f"{str(path):<60}{model.inputs.image_size:>6}px{str(model.inputs.mirror):>8}{median:>10.4f}"
              f"{median / medians[0]:>8.2f}")


if __name__ == "__main__":
    main()
