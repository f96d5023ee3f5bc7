"""How far averaging answers could go: mixes of systems' pooled clip probabilities from clip_accuracy runs.

``clip_accuracy.py`` writes each system's mean-pooled five-label probabilities per clip (``ours_p_*``,
``faceapi_p_*``, ``fer_p_*`` in ``per_clip.csv``). Mean pooling is linear, so a weighted mean of two
systems' pooled vectors is what averaging them frame by frame would pool to. That bounds, without
building anything, what serving two models together (or distilling one into the other) can reach on these
clips. A figure for the record, never a choice: the clips are the benchmark's own.

    python benchmarks/pooled_mix.py RUN_A/per_clip.csv:ours RUN_A/per_clip.csv:faceapi [--weights 0,0.25,0.5]
    python benchmarks/pooled_mix.py RUN_A/per_clip.csv:ours RUN_B/per_clip.csv:ours

With two systems, each weight w gives (1 - w) * first + w * second; with more, the plain mean. Accuracy is
on five labels, for the even-numbered clips, the odd ones and all, beside each system alone.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.clip_accuracy import LABELS  # noqa: E402

SYSTEMS = ("ours", "faceapi", "fer")


def read_system(spec: str) -> tuple[str, dict[str, tuple[str, np.ndarray]]]:
    """``path:system`` -> clip -> (true label, pooled five-label probabilities; zeros where no face was found)."""
    path, _, system = spec.rpartition(":")
    if system not in SYSTEMS or not path:
        raise SystemExit(f"pooled_mix: {spec!r} must be PER_CLIP.csv:SYSTEM, SYSTEM one of {', '.join(SYSTEMS)}")
    if not Path(path).is_file():
        raise SystemExit(f"pooled_mix: {path} does not exist; run benchmarks/clip_accuracy.py first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    clips = {row["clip"]: (row["true"], np.array([float(row[f"{system}_p_{label}"] or 0.0) for label in LABELS]))
             for row in rows}
    return spec, clips


def clip_number(clip: str) -> int:
    """``Anger_0007.mp4`` -> 7: the benchmark's halves are the odd and the even numbers."""
    return int(Path(clip).stem.rsplit("_", 1)[1])


def accuracy(truth: dict[str, str], probs: dict[str, np.ndarray], keep: int | None) -> float:
    chosen = [c for c in truth if keep is None or clip_number(c) % 2 == keep]
    right = sum(LABELS[int(np.argmax(probs[c]))] == truth[c] for c in chosen)
    return 100.0 * right / len(chosen)


def row(name: str, truth: dict[str, str], probs: dict[str, np.ndarray]) -> str:
    cells = [f"{accuracy(truth, probs, keep):5.1f}%" for keep in (0, 1, None)]
    return f"{name:60s} " + "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("systems", nargs="+", help="per_clip.csv:SYSTEM, SYSTEM one of ours, faceapi, fer")
    parser.add_argument("--weights", default="0.25,0.5,0.75", help="with two systems: the second one's weights")
    args = parser.parse_args()
    if len(args.systems) < 2:
        raise SystemExit("pooled_mix: name at least two systems to mix")
    read = [read_system(spec) for spec in args.systems]
    clips = set(read[0][1])
    for spec, table in read[1:]:
        if set(table) != clips:
            raise SystemExit(f"pooled_mix: {spec} holds other clips than {read[0][0]}; mix runs on the same clips")
    truth = {c: label for c, (label, _) in read[0][1].items()}
    print(f"{'five labels':60s}   even    odd    all")
    for spec, table in read:
        print(row(spec, truth, {c: p for c, (_, p) in table.items()}))
    if len(read) == 2:
        for w in (float(x) for x in args.weights.split(",")):
            mixed = {c: (1 - w) * read[0][1][c][1] + w * read[1][1][c][1] for c in clips}
            print(row(f"{1 - w:.2f} x first + {w:.2f} x second", truth, mixed))
    else:
        mean = {c: np.mean([table[c][1] for _, table in read], axis=0) for c in clips}
        print(row("mean of all", truth, mean))


if __name__ == "__main__":
    main()
