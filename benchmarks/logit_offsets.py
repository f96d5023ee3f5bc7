"""Fit a served model's class offsets (``export --logit-offset``) on selection data, report on held-out data.

A model trained on FER+ answers "neutral" to many mildly expressive real faces; a fixed offset on a class's
logit moves that line. One offset (neutral -0.75) was chosen on the benchmark's odd clips before. Here the
whole vector is searched at once, under a floor on FER+ valid recall for the classes named with
``--min-recall``, so that the clip benchmark is not won by giving up those classes on FER+.

Selection data: the odd-numbered clips of benchmarks/clip_accuracy.py (``<Label>_<NNNN>.mp4``, NNNN odd)
and FER+ valid. Held out, for the report only: the even-numbered clips and FER+ test.

The model is measured as it is served: the checkpoint is exported as int8 ONNX without mirror averaging
(``export --no-mirror --int8``), each face and its mirror image go through it, and the offsets are added
to those log-probabilities (a softmax does not see a shift common to all classes, so adding to
log-probabilities is adding to logits). Clip probabilities are formed as ``predict`` forms them: mean over
the mirror pair, over each window's faces, then over windows. Int8 moves answers: the float model says
disgust on ~25 more of the 500 clips than its int8 export. The int8 graph is calibrated once, without
the offsets; the export with offsets is calibrated again, so `clip_accuracy.py` on that export is the
figure of record.

    python benchmarks/logit_offsets.py [--model models/default/ferplus_mobilenetv2.pt]
        [--clips-dir data/bench/clip_accuracy/clips] [--stacks data/stacks/ferplus_48]
        [--grid -1:1:0.25] [--fixed happy] [--min-recall neutral=0.72 --min-recall disgust=0.72]
        [--served EXPORT.onnx]

``--served``: also score a served export (the one made with the fitted offsets) on FER+ valid and test as
it is served, mirror averaging and all: the floors are met by the search's graph, and the export's own
calibration moves recall by a few points.

The clips are those `clip_accuracy.py --per-label 100` makes; the FER+ stacks those `make default-model`
prepares. Writes ``faces.npz`` (the log-probabilities, reused while the model file is unchanged) and
``offsets.json`` into --out, and prints the export command for the chosen offsets.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stacks  # noqa: E402, F401, I001  (quiet native logging: first, before cv2 and mediapipe load)
from stacks.faces import close_finders  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.clip_accuracy import LABEL_CLASSES, true_label  # noqa: E402
from models.served import DEFAULT_MODEL, ModelLoadError, ServingModel, load_onnx  # noqa: E402
from pipeline.serve.export import ExportError, export_onnx  # noqa: E402
from pipeline.serve.predict import PredictError, clip_windows, run_batched  # noqa: E402
from stacks.atomic import atomic_write  # noqa: E402
from stacks.dataset import StackDataset  # noqa: E402
from stacks.manifest import MANIFEST_NAME, read_manifest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = REPO / "data" / "bench" / "clip_accuracy" / "clips"
DEFAULT_STACKS = REPO / "data" / "stacks" / "ferplus_48"
DEFAULT_CALIBRATION = REPO.parent / "shared" / "data" / "fer2013" / "train"
DEFAULT_OUT = REPO / "data" / "bench" / "logit_offsets"
SERVE_INTERVAL = 0.333333  # as models/default/ferplus_mobilenetv2_int8.onnx is exported (Makefile)
BATCH = 256  # offset vectors scored per numpy step


@dataclass
class Faces:
    """Log-probabilities (N, 2, K) of each face and its mirror, and what each face counts for."""

    logp: np.ndarray
    owner: np.ndarray  # (N,) the clip or image each face belongs to
    weight: np.ndarray  # (N,) its share of that item's mean
    truth: np.ndarray  # (items,) class index of each item's true label
    found: np.ndarray  # (items,) whether any face was found (a clip without one is wrong)

    def __post_init__(self) -> None:
        if np.any(np.diff(self.owner) < 0):  # ``probs`` sums each item's faces as one run
            raise ValueError("faces must be stored item by item (owner ascending)")

    def probs(self, offsets: np.ndarray) -> np.ndarray:
        """(B, items, K) probabilities of every item under each of B offset vectors (B, K)."""
        z = self.logp[None] + offsets[:, None, None, :].astype(np.float32)
        z -= z.max(-1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(-1, keepdims=True)
        p = p.mean(2) * self.weight[None, :, None]
        out = np.zeros((len(offsets), len(self.truth), p.shape[-1]), np.float32)
        items, starts = np.unique(self.owner, return_index=True)
        out[:, items] = np.add.reduceat(p, starts, axis=1)
        return out

    def subset(self, keep: np.ndarray) -> Faces:
        """The items where ``keep`` is true, renumbered."""
        new = np.full(len(keep), -1)
        new[keep] = np.arange(int(keep.sum()))
        rows = keep[self.owner]
        return Faces(self.logp[rows], new[self.owner[rows]], self.weight[rows], self.truth[keep], self.found[keep])


FIELDS = [f.name for f in dataclasses.fields(Faces)]


def face_logp(model: ServingModel, faces: np.ndarray, mirror: bool = True) -> np.ndarray:
    """(N, 1, S, S) uint8 faces -> (N, 2, K) log-probabilities of each face and its mirror image; with
    ``mirror=False`` (N, 1, K), for a model that averages the mirror itself."""
    views = (faces, np.ascontiguousarray(faces[..., ::-1])) if mirror else (faces,)
    probs = np.stack([run_batched(model, view) for view in views], axis=1)
    return np.log(np.maximum(probs, 1e-12)).astype(np.float32)


def clip_faces(clips: list[Path], model: ServingModel) -> Faces:
    """Every window's faces of every clip, weighted as ``predict`` averages them."""
    column = {label: model.classes.index(name) for label, name in LABEL_CLASSES.items()}
    logp, owner, weight, found = [], [], [], []
    for i, clip in enumerate(tqdm(clips, desc="clips", unit="clip")):
        try:
            stacked = clip_windows(clip, model).stacked
        except PredictError as exc:
            raise SystemExit(f"{exc}: make the clips again with benchmarks/clip_accuracy.py") from exc
        found.append(bool(stacked))
        for window in stacked:
            logp.append(face_logp(model, window.array[:, None]))
            owner.append(np.full(len(window.array), i))
            weight.append(np.full(len(window.array), 1.0 / len(window.array) / len(stacked)))
    truth = np.array([column[true_label(clip)] for clip in clips])
    return Faces(np.concatenate(logp), np.concatenate(owner), np.concatenate(weight).astype(np.float32), truth,
                 np.array(found))


def stack_faces(folder: Path, split: str, model: ServingModel, mirror: bool = True) -> Faces:
    """One face per stack of ``split`` (FER+: one image each), labelled by its majority label."""
    data = StackDataset(read_manifest(folder, split=split), model.classes, model.inputs.image_size)
    n = len(data.labels)
    return Faces(face_logp(model, data.images, mirror), np.arange(n), np.ones(n, np.float32), data.labels,
                 np.ones(n, bool))


def scores(faces: Faces, offsets: np.ndarray, columns: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(B,) accuracy and (B, K) recall per class; ``columns``: the argmax only over those classes."""
    p = faces.probs(offsets)
    pred = p.argmax(-1) if columns is None else np.array(columns)[p[..., columns].argmax(-1)]
    right = (pred == faces.truth) & faces.found
    recall = np.stack([right[:, faces.truth == k].mean(1) if (faces.truth == k).any() else np.full(len(p), np.nan)
                       for k in range(p.shape[-1])], axis=1)
    return right.mean(1), recall


def search(select_clips: Faces, valid: Faces, grid: np.ndarray, free: list[int], floors: dict[int, float],
           classes: int, five: list[int] | None = None) -> tuple[np.ndarray, dict]:
    """The offset vector with the best all-class accuracy on ``select_clips`` among those whose FER+ valid
    recall meets every floor; ties: higher valid accuracy, then the smaller sum of |offsets|.

    Also says what the floors cost: the best clip accuracy (all classes, and over ``five`` alone) among the
    vectors whose floored recalls all reach each of a few levels at or above the floors."""
    combos = np.array(list(itertools.product(grid, repeat=len(free))), np.float32)
    vectors = np.zeros((len(combos), classes), np.float32)
    vectors[:, free] = combos
    feasible = np.ones(len(vectors), bool)
    valid_acc = np.zeros(len(vectors))
    lowest = np.ones(len(vectors))  # the lowest FER+ valid recall among the floored classes
    for start in tqdm(range(0, len(vectors), BATCH), desc="FER+ valid", unit="batch"):
        acc, recall = scores(valid, vectors[start:start + BATCH])
        valid_acc[start:start + BATCH] = acc
        for k, floor in floors.items():
            feasible[start:start + BATCH] &= recall[:, k] >= floor
            lowest[start:start + BATCH] = np.minimum(lowest[start:start + BATCH], recall[:, k])
    index = np.flatnonzero(feasible)
    if not len(index):
        raise SystemExit(f"no offsets on the grid meet the recall floors on FER+ valid ({floors}): lower them")
    clip_acc, clip_five = np.zeros(len(index)), np.zeros(len(index))
    for start in tqdm(range(0, len(index), BATCH // 4), desc="odd clips", unit="batch"):
        chunk = slice(start, start + BATCH // 4)
        clip_acc[chunk] = scores(select_clips, vectors[index[chunk]])[0]
        if five is not None:
            clip_five[chunk] = scores(select_clips, vectors[index[chunk]], five)[0]
    order = np.lexsort((np.abs(vectors[index]).sum(1), -valid_acc[index], -clip_acc))  # last key sorts first
    best = index[order[0]]
    start_level = max(floors.values(), default=0.0)  # below it, only the feasible vectors would be seen
    front = {f"{level:.2f}": [float(clip_acc[reach].max(initial=0)), float(clip_five[reach].max(initial=0))]
             for level in sorted({start_level, start_level + 0.03, start_level + 0.06})
             for reach in [lowest[index] >= level - 1e-9]}
    return vectors[best], {"grid_points": len(vectors), "feasible": len(index), "front": front}


def parse_grid(text: str) -> np.ndarray:
    """``LOW:HIGH:STEP``, both ends included."""
    try:
        low, high, step = (float(x) for x in text.split(":"))
        if step <= 0 or high < low:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH:STEP with LOW <= HIGH and STEP > 0 (got {text!r})") \
            from None
    return np.round(np.arange(low, high + step / 2, step), 6)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="checkpoint (.pt) or run folder")
    parser.add_argument("--clips-dir", type=Path, default=DEFAULT_CLIPS, help="clip_accuracy.py's clips")
    parser.add_argument("--stacks", type=Path, default=DEFAULT_STACKS, help="FER+ stack folder (val and test)")
    parser.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION, help="int8 calibration faces")
    parser.add_argument("--serve-interval", type=float, default=SERVE_INTERVAL)
    parser.add_argument("--grid", type=parse_grid, default=parse_grid("-1:1:0.25"), help="LOW:HIGH:STEP")
    parser.add_argument("--fixed", default="happy", help="the class whose offset stays 0 (offsets are relative)")
    parser.add_argument("--min-recall", action="append", default=[], metavar="CLASS=FRACTION",
                        help="FER+ valid recall floor (repeatable); default neutral=0.72 and disgust=0.72")
    parser.add_argument("--served", type=Path, help="a served export (.onnx) to score on FER+ valid and test")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args()


def file_digest(path: Path) -> str:
    """Content digest of a file, or of every file under a folder (a run folder), for the cache key."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        if f.is_file():
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(args: argparse.Namespace, clips: list[Path]) -> str:
    """Everything the cached log-probabilities depend on: the model, how it is exported, the clips (names
    and sizes: the odd/even split and the labels come from the names) and the FER+ manifest."""
    parts = [file_digest(args.model), str(args.serve_interval), str(args.calibration.resolve()),
             str(args.stacks.resolve()), file_digest(args.stacks / MANIFEST_NAME),
             *(f"{clip.name}:{clip.stat().st_size}" for clip in clips)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def measured_faces(args: argparse.Namespace, clips: list[Path]) -> tuple[tuple[str, ...], dict[str, Faces]]:
    """The log-probabilities of the clips and FER+ valid/test, from --out when made with this model."""
    cache = args.out / "faces.npz"
    key = cache_key(args, clips)
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as saved:
            if str(saved["key"]) == key:
                sets = {name: Faces(*(saved[f"{name}_{part}"] for part in FIELDS))
                        for name in ("clips", "valid", "test")}
                return tuple(str(c) for c in saved["classes"]), sets
    onnx = args.out / "no_mirror_int8.onnx"
    try:
        atomic_write(onnx, lambda tmp: export_onnx(args.model, tmp, mirror=False, int8=args.calibration,
                                                   serve_interval=args.serve_interval))
        model = load_onnx(onnx)
    except (ExportError, ModelLoadError) as exc:
        raise SystemExit(f"cannot export {args.model} for the search: {exc}") from exc
    if model.kind != "frame":
        raise SystemExit(f"{args.model} is a {model.kind} model: the search pools faces; it needs a frame model")
    sets = {"clips": clip_faces(clips, model), "valid": stack_faces(args.stacks, "val", model),
            "test": stack_faces(args.stacks, "test", model)}
    arrays = {f"{name}_{part}": getattr(faces, part) for name, faces in sets.items() for part in FIELDS}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would add .npz to the temporary name
            np.savez(fh, key=key, classes=np.array(model.classes), **arrays)

    atomic_write(cache, write)
    return model.classes, sets


def parse_floors(texts: list[str], classes: tuple[str, ...]) -> dict[int, float]:
    """``CLASS=FRACTION`` floors as {class index: fraction}."""
    floors = {}
    for text in texts:
        name, _, value = text.partition("=")
        try:
            floors[classes.index(name.strip())] = float(value)
        except ValueError:
            raise SystemExit(f"--min-recall {text!r}: expected CLASS=FRACTION with CLASS one of "
                             f"{', '.join(classes)} (e.g. neutral=0.72)") from None
    return floors


def fer_row(faces: Faces, vector: np.ndarray) -> str:
    """Accuracy, UAR and every class's recall on a FER+ split."""
    acc, recall = scores(faces, vector[None])
    return f"{100 * acc[0]:.2f}, {100 * np.nanmean(recall[0]):.2f}, " + " ".join(f"{100 * r:.1f}" for r in recall[0])


def report(classes: tuple[str, ...], sets: dict[str, Faces], odd: np.ndarray, chosen: np.ndarray) -> list[str]:
    """The model as given and with the fitted offsets, on the selection and the held-out data."""
    five = [classes.index(name) for name in LABEL_CLASSES.values()]
    lines = ["model | odd clips 7 / 5 classes | even clips 7 / 5 classes (held out) | FER+ valid acc, UAR, recall | "
             "FER+ test (held out) acc, UAR, recall; recall order: " + " ".join(classes)]
    for name, vector in (("as given", np.zeros(len(classes), np.float32)), ("fitted", chosen)):
        row = [name]
        for half in (odd, ~odd):
            part = sets["clips"].subset(half)
            every, labelled = scores(part, vector[None])[0][0], scores(part, vector[None], five)[0][0]
            row.append(f"{100 * every:.1f} / {100 * labelled:.1f}")
        row += [fer_row(sets["valid"], vector), fer_row(sets["test"], vector)]
        lines.append(" | ".join(row))
    return lines


def served_lines(path: Path, stacks_dir: Path) -> list[str]:
    """A served export on FER+ valid and test, mirror averaging and its own offsets as it serves them."""
    try:
        model = load_onnx(path)
    except ModelLoadError as exc:
        raise SystemExit(str(exc)) from exc
    none = np.zeros(len(model.classes), np.float32)
    valid, test = (fer_row(stack_faces(stacks_dir, split, model, mirror=False), none) for split in ("val", "test"))
    return [f"served {path.name} ({model.describe()}): FER+ valid {valid} | test {test}"]


def main() -> None:
    args = parse_args()
    clips = sorted(args.clips_dir.glob("*.mp4"))
    if not clips:
        raise SystemExit(f"no clips in {args.clips_dir}: run benchmarks/clip_accuracy.py --per-label 100 first")
    if not (args.stacks / MANIFEST_NAME).is_file():
        raise SystemExit(f"no FER+ stacks in {args.stacks}: prepare them as `make default-model` does")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        classes, sets = measured_faces(args, clips)
    finally:
        close_finders()
    floors_text = args.min_recall or ["neutral=0.72", "disgust=0.72"]
    floors = parse_floors(floors_text, classes)
    if args.fixed not in classes:
        raise SystemExit(f"--fixed {args.fixed!r}: not a class of the model ({', '.join(classes)})")
    odd = np.array([int(re.search(r"_(\d+)", clip.stem).group(1)) % 2 == 1 for clip in clips])
    free = [k for k, name in enumerate(classes) if name != args.fixed]
    five = [classes.index(name) for name in LABEL_CLASSES.values()]
    chosen, info = search(sets["clips"].subset(odd), sets["valid"], args.grid, free, floors, len(classes), five)

    offsets = {name: float(v) for name, v in zip(classes, chosen) if v}
    mirror = " --mirror" if args.model.is_dir() else ""  # a run is exported unmirrored unless told
    command = (f"python cli.py export {args.model} --compact NEW.pt{mirror} "
               + " ".join(f"--logit-offset {name}={value:g}" for name, value in offsets.items()))
    lines = [f"{len(clips)} clips ({int(odd.sum())} odd for selection), FER+ valid {len(sets['valid'].truth)}, "
             f"test {len(sets['test'].truth)}; {info['grid_points']} offset vectors, {info['feasible']} meet the "
             f"floors {floors_text} on FER+ valid",
             *report(classes, sets, odd, chosen),
             f"fitted offsets (added to the model's own): {offsets}",
             "best odd-clip accuracy [all classes, five labels] among the vectors whose floored FER+ valid recalls "
             f"all reach each level: {info['front']}",
             f"apply: {command}"]
    if args.served:
        lines += served_lines(args.served, args.stacks)
    print("\n".join(lines))
    (args.out / "offsets.json").write_text(json.dumps({"offsets": offsets, "floors": floors_text, **info,
                                                       "report": lines}, indent=2) + "\n")


if __name__ == "__main__":
    main()
