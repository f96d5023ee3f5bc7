"""Would Face Mesh landmark geometry, fused with the image model, make the answers on real faces better?

Issue 14 lists "landmark geometry from MediaPipe's Face Mesh, fused with the image" among its ideas. This
measures it before anything is built into the served path:

1. the 468 Face Mesh points (``MeshFinder.landmarks``: BlazeFace, then the landmark model on a square turned to
   level the eyes) of every FER+ face, each 48 px image enlarged to 192 px first so the detector finds it;
2. the points moved so that the eyes' outer corners sit at (-0.5, 0) and (0.5, 0): position, size and roll
   are gone, the shape of brows, eyes and mouth is left;
3. a small MLP on those 936 numbers, trained on FER+ train against the annotators' vote distribution (as
   ``train --targets soft``), its epoch chosen on FER+ valid accuracy, reported on FER+ test;
4. the same points of each of the benchmark's real photos, and the geometry's log-probabilities added, times
   a weight w, to the shipped model's pooled log-probabilities from a ``clip_accuracy.py`` run
   (``per_clip.csv``). w is chosen on the odd-numbered clips, reported on the even ones, beside face-api.js
   from the same run.

The geometry is taken from each clip's photo, not from its frames: the clips move the same photo, so its
shape is the same in every frame. Landmarks are cached in ``--out`` so a second run takes seconds.

    python benchmarks/landmark_fusion.py --per-clip data/bench/clip_fresh_int8/per_clip.csv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import stacks  # noqa: E402, F401, I001  (quiet native logging: first, before cv2 and mediapipe load)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.clip_accuracy import DEFAULT_PHOTOS, LABEL_CLASSES, LABELS, expected_clips  # noqa: E402
from benchmarks.pooled_mix import clip_number, read_system  # noqa: E402
from pipeline.prepare.ferplus import discover_ferplus  # noqa: E402
from stacks.faces import MeshFinder, close_finders  # noqa: E402
from stacks.manifest import parse_votes  # noqa: E402

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
DEFAULT_FERPLUS = REPO.parent / "shared" / "data" / "ferplus"
DEFAULT_OUT = REPO / "data" / "bench" / "landmark_fusion"
FER_SIDE = 192  # FER+'s 48 px faces are too small for BlazeFace; 4x is what the Face Mesh model sees anyway
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def aligned(points: np.ndarray) -> np.ndarray:
    """(n, 468, 2) frame points -> (n, 936): eyes' outer corners at (-0.5, 0) and (0.5, 0)."""
    right, left = points[:, MeshFinder.EYES[0]], points[:, MeshFinder.EYES[1]]
    centred = points - ((right + left) / 2)[:, None]
    d = left - right
    scale = np.hypot(d[:, 0], d[:, 1])[:, None]
    cos, sin = (d[:, 0:1] / scale), (d[:, 1:2] / scale)  # turn by minus the eye line's angle
    x = (centred[..., 0] * cos + centred[..., 1] * sin) / scale
    y = (-centred[..., 0] * sin + centred[..., 1] * cos) / scale
    return np.concatenate([x, y], axis=1).astype(np.float32)


def first_face(finder: MeshFinder, rgb: np.ndarray) -> np.ndarray | None:
    faces = finder.landmarks(rgb)
    return faces[0] if faces else None


def ferplus_points(root: Path, cache: Path, finder: MeshFinder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (points of the faces found, their vote distributions over ``CLASSES``)."""
    if cache.is_file():
        data = np.load(cache)
        return {split: (data[f"{split}_points"], data[f"{split}_targets"]) for split in ("train", "val", "test")}
    sources, _ = discover_ferplus(root)
    found: dict[str, tuple[list, list]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    missed = 0
    for source in tqdm(sources, desc="FER+ landmarks", unit="face"):
        grey = cv2.imread(str(source.path), cv2.IMREAD_GRAYSCALE)
        big = cv2.resize(grey, (FER_SIDE, FER_SIDE), interpolation=cv2.INTER_CUBIC)
        points = first_face(finder, cv2.cvtColor(big, cv2.COLOR_GRAY2RGB))
        if points is None:
            missed += 1
            continue
        votes = parse_votes(source.votes)
        target = np.array([votes.get(cls, 0) for cls in CLASSES], np.float32)
        found[source.split][0].append(points)
        found[source.split][1].append(target / target.sum())
    print(f"FER+: no face found in {missed} of {len(sources)} images; they are left out")
    result = {split: (np.array(p, np.float32), np.array(t, np.float32)) for split, (p, t) in found.items()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **{f"{s}_{k}": v for s, (p, t) in result.items() for k, v in (("points", p), ("targets", t))})
    return result


def photo_points(photos: Path, cache: Path, finder: MeshFinder) -> dict[str, np.ndarray]:
    """clip name -> its photo's points (only the photos where a face is found)."""
    if cache.is_file():
        data = np.load(cache)
        return dict(zip(data["clips"].tolist(), data["points"]))
    result = {}
    for clip, (photo, _) in tqdm(expected_clips(photos, 100).items(), desc="photo landmarks", unit="photo"):
        points = first_face(finder, cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB))
        if points is not None:
            result[clip] = points
    np.savez(cache, clips=np.array(list(result)), points=np.array(list(result.values()), np.float32))
    return result


def fit_geometry(data: dict[str, tuple[np.ndarray, np.ndarray]], epochs: int, seed: int):
    """The MLP on aligned points, its epoch chosen on FER+ valid; returns (features -> log-probabilities)."""
    torch.manual_seed(seed)
    x_train = aligned(data["train"][0])
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6

    def inputs(points: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((aligned(points) - mean) / std)

    net = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], 512), torch.nn.GELU(), torch.nn.Dropout(0.3),
                              torch.nn.Linear(512, 256), torch.nn.GELU(), torch.nn.Dropout(0.3),
                              torch.nn.Linear(256, len(CLASSES)))
    optimiser = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.05)
    x, targets = inputs(data["train"][0]), torch.from_numpy(data["train"][1])
    x_val, y_val = inputs(data["val"][0]), data["val"][1].argmax(1)
    best = (-1.0, 0, None)
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), 256):
            batch = order[start:start + 256]
            logits = net(x[batch] + 0.1 * torch.randn_like(x[batch]))
            loss = -(targets[batch] * torch.log_softmax(logits, 1)).sum(1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        net.eval()
        with torch.no_grad():
            accuracy = float((net(x_val).argmax(1).numpy() == y_val).mean())
        if accuracy > best[0]:
            best = (accuracy, epoch, {k: v.clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best[2])
    print(f"geometry MLP: best FER+ valid accuracy {100 * best[0]:.2f}% at epoch {best[1]} of {epochs}")

    def log_probs(points: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.log_softmax(net(inputs(points)), 1).numpy()
    return log_probs


def fer_report(log_probs, points: np.ndarray, targets: np.ndarray, split: str) -> None:
    truth, answer = targets.argmax(1), log_probs(points).argmax(1)
    recalls = [f"{cls} {100 * (answer[truth == k] == k).mean():.0f}%" for k, cls in enumerate(CLASSES)]
    print(f"geometry alone, FER+ {split} (majority labels, {len(truth)} faces found): "
          f"{100 * (answer == truth).mean():.2f}%; recall {', '.join(recalls)}")


def fused_accuracy(ours: dict, geometry: dict[str, np.ndarray], weight: float, half: int | None) -> float:
    """Five-label accuracy of log p_ours + weight * log p_geometry (ours alone where the photo shows no face)."""
    columns = [CLASSES.index(LABEL_CLASSES[label]) for label in LABELS]
    right = total = 0
    for clip, (truth, probs) in ours.items():
        if half is not None and clip_number(clip) % 2 != half:
            continue
        total += 1
        if not probs.any():  # no face in the clip: the served answer is "no face", which is wrong
            continue
        score = np.log(np.maximum(probs, 1e-12))
        if clip in geometry and weight:
            geo = geometry[clip][columns]
            score = score + weight * (geo - np.logaddexp.reduce(geo))
        right += LABELS[int(np.argmax(score))] == truth
    return 100.0 * right / total


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-clip", type=Path, required=True, help="per_clip.csv of a clip_accuracy.py run")
    parser.add_argument("--ferplus", type=Path, default=DEFAULT_FERPLUS)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="landmark cache")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    finder = MeshFinder(max_faces=1)
    try:
        data = ferplus_points(args.ferplus, args.out / "ferplus_points.npz", finder)
        args.out.mkdir(parents=True, exist_ok=True)
        photos = photo_points(args.photos, args.out / "photo_points.npz", finder)
    finally:
        close_finders()
    log_probs = fit_geometry(data, args.epochs, args.seed)
    for split in ("val", "test"):
        fer_report(log_probs, *data[split], split)
    geometry = dict(zip(photos, log_probs(np.array(list(photos.values())))))
    _, ours = read_system(f"{args.per_clip}:ours")
    _, faceapi = read_system(f"{args.per_clip}:faceapi")
    print(f"\nphotos with a face found: {len(photos)} of {len(ours)}; five labels, log p_ours + w log p_geometry")
    print(f"{'':28s} {'odd (choice)':>13s} {'even (clean)':>13s} {'all':>7s}")
    rows = {w: [fused_accuracy(ours, geometry, w, half) for half in (1, 0, None)] for w in WEIGHTS}
    for weight, cells in rows.items():
        print(f"{'ours + geometry, w = ' + format(weight, 'g'):28s} " + " ".join(f"{c:12.1f}%" for c in cells))
    alone = {clip: (truth, np.exp(geometry[clip][[CLASSES.index(LABEL_CLASSES[x]) for x in LABELS]]))
             for clip, (truth, _) in ours.items() if clip in geometry}
    print(f"{'geometry alone':28s} " + " ".join(f"{fused_accuracy(alone, {}, 0, h):12.1f}%" for h in (1, 0, None)))
    print(f"{'face-api.js (same run)':28s} " + " ".join(f"{fused_accuracy(faceapi, {}, 0, h):12.1f}%"
                                                      for h in (1, 0, None)))
    chosen = max(WEIGHTS, key=lambda w: (rows[w][0], -w))
    print(f"\nchosen on the odd clips: w = {chosen:g}; even (clean) {rows[chosen][1]:.1f}%, "
          f"against w = 0: {rows[0.0][1]:.1f}%  ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
