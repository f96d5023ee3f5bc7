"""benchmarks/pooled_mix.py: mixing pooled clip probabilities, read as clip_accuracy.py writes them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from benchmarks.clip_accuracy import LABELS

REPO = Path(__file__).resolve().parents[1]


def _per_clip(path: Path, probs: dict[str, tuple[str, list[float], list[float]]]) -> None:
    """A per_clip.csv with the columns pooled_mix reads: clip -> (true label, ours probs, faceapi probs)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip", "true"] + [f"ours_p_{label}" for label in LABELS]
                        + [f"faceapi_p_{label}" for label in LABELS])
        for clip, (true, ours, faceapi) in probs.items():
            writer.writerow([clip, true] + [str(p) for p in ours] + [str(p) for p in faceapi])


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "pooled_mix.py"), *args],
                          capture_output=True, text=True, cwd=REPO)


def test_a_mix_can_be_right_where_neither_system_is(tmp_path: Path) -> None:
    # anger, happy, neutral, sad, surprise. Clip 1: ours says neutral, face-api happy, their mean sad (the truth).
    # Clip 2 (even): both right. A weight of 0 or 1 gives back each system alone.
    csv_path = tmp_path / "per_clip.csv"
    _per_clip(csv_path, {
        "Sad_0001.mp4": ("sad", [0, 0, 0.5, 0.4, 0.1], [0, 0.5, 0, 0.4, 0.1]),
        "Happy_0002.mp4": ("happy", [0, 0.9, 0.1, 0, 0], [0, 0.8, 0.2, 0, 0]),
    })
    done = _run(f"{csv_path}:ours", f"{csv_path}:faceapi", "--weights", "0,0.5,1")
    assert done.returncode == 0, done.stderr
    lines = {name: cells for name, *cells in (line.rsplit(maxsplit=3) for line in done.stdout.splitlines()[1:])}
    assert lines[f"{csv_path}:ours"] == ["100.0%", "0.0%", "50.0%"]
    assert lines["1.00 x first + 0.00 x second"] == ["100.0%", "0.0%", "50.0%"]
    assert lines["0.50 x first + 0.50 x second"] == ["100.0%", "100.0%", "100.0%"]
    assert lines["0.00 x first + 1.00 x second"] == lines[f"{csv_path}:faceapi"]


def test_runs_on_other_clips_are_not_mixed(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _per_clip(a, {"Sad_0001.mp4": ("sad", [0, 0, 0, 1, 0], [0, 0, 0, 1, 0])})
    _per_clip(b, {"Sad_0003.mp4": ("sad", [0, 0, 0, 1, 0], [0, 0, 0, 1, 0])})
    done = _run(f"{a}:ours", f"{b}:ours")
    assert done.returncode == 1
    assert "other clips" in done.stderr and "Traceback" not in done.stderr
