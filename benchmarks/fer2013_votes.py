"""FER+ stacks whose training targets also count FER2013's own label: an experiment's data, not the recipe's.

FER+'s ten annotators call many faint faces neutral that FER2013's single label calls sad, fear or angry (of
the 10,295 FER+ train faces whose majority is neutral, FER2013 says sad for 2,544, fear for 1,440 and angry for
1,316). The real photos' labellers call such faces sad, as FER2013 does, so a model that learns both
conventions, face by face, might answer them better than one global logit offset does. This writes a copy of a
FER+ stack folder (the stack files linked, not copied) whose manifest adds ``--votes`` votes for the FER2013
label to each train face's FER+ votes; valid and test keep FER+'s votes, so selection and the report stay FER+'s.

The FER2013 label of a FER+ image is found by its pixels: FER+'s images are FER2013's exact pixels, and
``../shared/data/fer2013`` holds them resampled under other names, so each FER+ train image is matched to the
FER2013 Training image with the highest correlation of pixels. Only labels cross over, never images, and only
within the same split.

    python benchmarks/fer2013_votes.py --stacks data/stacks/ferplus_48 --out data/stacks/ferplus_48_fer2013x5
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from stacks.manifest import format_votes, parse_votes  # noqa: E402

DEFAULT_FERPLUS = REPO.parent / "shared" / "data" / "ferplus"
DEFAULT_FER2013 = REPO.parent / "shared" / "data" / "fer2013"
SIDE = 48


def pixels(path: Path) -> np.ndarray:
    """A 48x48 grey image as a unit vector with its mean taken away (resampling changes level and contrast)."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise SystemExit(f"fer2013_votes: cannot read {path}")
    if image.shape != (SIDE, SIDE):
        image = cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    vector = image.astype(np.float32).ravel()
    vector -= vector.mean()
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def nearest(queries: np.ndarray, pool: np.ndarray, chunk: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the index of the most correlated pool row and that correlation."""
    best, score = np.empty(len(queries), int), np.empty(len(queries), np.float32)
    for start in range(0, len(queries), chunk):
        similarity = queries[start:start + chunk] @ pool.T
        best[start:start + chunk] = similarity.argmax(1)
        score[start:start + chunk] = similarity.max(1)
    return best, score


def fer2013_labels(ferplus: Path, fer2013: Path, names: list[str]) -> dict[str, str]:
    """FER+ train image name -> FER2013's label of the same face."""
    with open(fer2013 / "index.csv", newline="") as handle:
        training = [row for row in csv.DictReader(handle) if row["usage"] == "Training"]
    pool = np.stack([pixels(fer2013 / row["path"]) for row in training])
    best, score = nearest(np.stack([pixels(ferplus / "train" / name) for name in names]), pool)
    print(f"matched {len(names)} FER+ train images to {len(training)} FER2013 Training images: correlation "
          f"lowest {score.min():.4f}, median {np.median(score):.4f}")
    return {name: training[i]["label"] for name, i in zip(names, best)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stacks", type=Path, required=True, help="FER+ stacks made by prepare (manifest.csv)")
    parser.add_argument("--out", type=Path, required=True, help="the copy to write")
    parser.add_argument("--votes", type=int, default=5, help="votes FER2013's label adds to FER+'s ten")
    parser.add_argument("--ferplus", type=Path, default=DEFAULT_FERPLUS)
    parser.add_argument("--fer2013", type=Path, default=DEFAULT_FER2013)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"fer2013_votes: {args.out} exists; remove it or choose another --out")
    with open(args.stacks / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    train = [row for row in rows if row["split"] == "train"]
    labels = fer2013_labels(args.ferplus, args.fer2013, [row["source"].split("/", 1)[1] for row in train])
    for row in train:
        votes = parse_votes(row["votes"])
        label = labels[row["source"].split("/", 1)[1]]
        votes[label] = votes.get(label, 0) + args.votes
        row["votes"] = format_votes(votes)
    args.out.mkdir(parents=True)
    for item in args.stacks.iterdir():
        if item.is_dir() and not item.name.startswith("."):
            (args.out / item.name).symlink_to(item.resolve(), target_is_directory=True)
        elif item.name != "manifest.csv" and item.is_file():
            shutil.copy2(item, args.out / item.name)
    with open(args.out / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}: {len(train)} train faces with {args.votes} FER2013 votes added")


if __name__ == "__main__":
    main()
