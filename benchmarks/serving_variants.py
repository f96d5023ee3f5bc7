"""Clip accuracy and speed of ways to serve a frame model: float or int8, and how many faces a clip gives.

A frame model classifies every sampled face of a window and averages; it has no channels tied to the
interval, so how often a clip is sampled is a serving choice. Fewer faces and int8 convolutions both
cut the network's time, the largest part of `predict` (24 faces, each also mirrored, on a 4 s clip).
This measures what each costs in accuracy, on the journal-style clips of benchmarks/clip_accuracy.py
(a real labelled photo from ../shared/data/faces drifting across a 640x480 frame for 4 s), and what
each takes as a ratio to decoding the same clips (the floor, timed in the same run).

  variants   --model (float, the shipped checkpoint) and --int8 (an `export --onnx --int8` of it), each
             sampling every --intervals frames at 30 fps (5: 1/6 s, the model's own; 10: 1/3 s; ...).

Each clip's answer is the argmax over the five classes that match the photo labels. Reports accuracy
(= UAR: balanced), per-label recall, agreement with the first variant, and median seconds per clip.

    python benchmarks/serving_variants.py --int8 models/default/ferplus_resnet18_int8.onnx \
        [--per-label 20] [--intervals 5,10,15] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import stacks  # noqa: E402, F401  (quiet native logging before cv2 and mediapipe load)
from models.served import DEFAULT_MODEL, ServingModel, load_serving_model  # noqa: E402
from pipeline.serve.predict import PredictError, predict_file  # noqa: E402
from stacks.faces import close_finders  # noqa: E402
from stacks.video import VideoReader, decode_threads  # noqa: E402
from tests.fixtures.clip_sets import make_clip_set  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LABEL_CLASSES = {"anger": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad", "surprise": "surprise"}


def clips_for(photos: Path, per_label: int, out: Path) -> list[Path]:
    """``per_label`` clips per label, made once into ``out`` (kept for reruns)."""
    existing = sorted(out.glob("*.mp4"))
    if len(existing) == per_label * len(LABEL_CLASSES):
        return existing
    return make_clip_set(out, photos=photos, per_label=per_label)


def decode_all(clip: Path) -> int:
    with VideoReader(clip, threads=decode_threads(1)) as reader:
        return sum(1 for _ in reader.decoded())


def answer(model: ServingModel, clip: Path) -> str | None:
    columns = [model.classes.index(c) for c in LABEL_CLASSES.values()]
    try:
        probs = predict_file(clip, model).probs
    except PredictError:
        return None
    return list(LABEL_CLASSES)[int(np.argmax(probs[columns]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the float model (checkpoint)")
    parser.add_argument("--int8", type=Path, help="its int8 ONNX export (`cli.py export --onnx X --int8 FACES`)")
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    parser.add_argument("--per-label", type=int, default=20)
    parser.add_argument("--intervals", default="5,10,15", help="sample every k frames at 30 fps")
    parser.add_argument("--clips-dir", type=Path, default=REPO / "data" / "bench" / "serving_variants" / "clips")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips = clips_for(args.photos, args.per_label, args.clips_dir)
    models = {"float": load_serving_model(args.model)}
    if args.int8:
        models["int8"] = load_serving_model(args.int8)
    variants: dict[str, ServingModel] = {}
    for name, model in models.items():
        for k in (int(x) for x in args.intervals.split(",")):
            variants[f"{name} every {k}"] = dataclasses.replace(model, stack=dataclasses.replace(model.stack,
                                                                                                 interval=k))
    truths = [clip.name.split("_")[0].lower() for clip in clips]
    answers: dict[str, list[str | None]] = {name: [] for name in variants}
    times: dict[str, list[float]] = {name: [] for name in [*variants, "decode"]}
    answer(next(iter(variants.values())), clips[0])  # warm-up
    for i, clip in enumerate(clips):
        names = list(variants)
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotate: noise hits all alike
            start = time.perf_counter()
            answers[name].append(answer(variants[name], clip))
            times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        decode_all(clip)
        times["decode"].append(time.perf_counter() - start)
    decode = statistics.median(times["decode"])
    first = next(iter(variants))
    print(f"serving variants, {len(clips)} clips ({args.per_label} per label) from {args.photos}, "
          f"torch threads {args.threads}; decode median {decode * 1000:.1f} ms/clip")
    print(f"{'variant':<16} {'accuracy':>8} " + " ".join(f"{label:>8}" for label in LABEL_CLASSES)
          + f" {'no face':>7} {'agree':>6} {'median s':>8} {'/decode':>7}")
    for name in variants:
        got = answers[name]
        recall = [np.mean([g == t for g, t in zip(got, truths) if t == label]) for label in LABEL_CLASSES]
        agree = np.mean([a == b for a, b in zip(got, answers[first])])
        med = statistics.median(times[name])
        print(f"{name:<16} {np.mean(recall):>8.1%} " + " ".join(f"{r:>8.0%}" for r in recall)
              + f" {sum(g is None for g in got):>7} {agree:>6.1%} {med:>8.3f} {med / decode:>7.2f}")


if __name__ == "__main__":
    try:
        main()
    finally:
        close_finders()  # while MediaPipe can still close them (not at interpreter exit)
