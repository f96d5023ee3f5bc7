"""How fast is `prepare` next to pure decoding and next to the seed's method? Ratios, side by side.

Speed targets on a noisy shared machine are only meaningful as ratios measured in one run, so this
makes N labelled face clips (real face photos drifting across a 640x480 frame for 4 s at 30 fps,
transcoded to H.264 like a phone's, one clip per photo, labels from the photo folders) and times,
for each worker count, three methods over the same clips:

  decode   ``cv2.VideoCapture`` and ``read()`` of every frame, clips spread over a thread pool: the
           floor that no clip -> stack method can beat.
  seed     the seed project's method: ``read()`` every frame, MediaPipe Face Mesh (tracking mode,
           one graph per worker thread reused across clips) on every frame, and for every 5th frame
           of each 90-frame sequence a crop from the landmark extent (margin 0.1, square, grey,
           224 px), kept in memory.
  prepare  ``run_prepare`` (the real ``cli.py prepare``) with default stack settings into a fresh
           output folder each time, force=True.

Every method builds its MediaPipe graphs inside its own timing, as a real run does. Each repeat runs
every (workers, method) pair once, the method order rotating from one repeat to the next, so that
noise and warm caches hit all methods alike; the table shows the median seconds over the repeats,
and the median CPU seconds (every thread of the process): however well `prepare` overlaps its threads, its
time cannot fall below its CPU time over the cores, which bounds the seed / prepare ratio it can reach.
Targets, per worker count: prepare / decode <= 1.3 and seed / prepare >= 5.

    python benchmarks/prepare_speed.py [--clips 24] [--repeats 7] [--workers 1,2]
                                       [--faces ../shared/data/faces] [--codec h264|mp4v] [--keep DIR]

Without the face photos, every clip is made from scikit-image's astronaut photo instead. The defaults
(24 clips, 7 repeats) make each 2-worker timing last over a second: with 12 clips it lasts ~0.6 s, and
on a shared 2-core machine single runs then swing by +-15%.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stacks  # noqa: E402, F401  (sets quiet logging env vars before cv2 and mediapipe load)

os.environ.setdefault("GLOG_minloglevel", "2")

import cv2  # noqa: E402
import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.prepare.run import run_prepare  # noqa: E402
from pipeline.prepare.settings import PrepareConfig  # noqa: E402
from stacks.faces import (  # noqa: E402,E501
    DetectionFinder,
    MeshFinder,
    close_finders,
    crop_grey,
    find_faces,
    native_stderr_silenced,
    square_box,
)
from stacks.settings import StackSettings  # noqa: E402
from tests.fixtures.clips import astronaut_head, load_photo, make_face_clip  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FACES = REPO.parent / "shared" / "data" / "faces"
METHODS = ("decode", "seed", "prepare")
TARGETS = {  # name: (numerator, denominator, bound, "<=" or ">=")
    "prepare / decode": ("prepare", "decode", 1.3, "<="),
    "seed / prepare": ("seed", "prepare", 5.0, ">="),
}
SEED_SETTINGS = StackSettings()  # the seed cropped with the same interval, sequence, margin and size


@dataclass(frozen=True)
class Run:
    """One timed call of one method: seconds, and a count that shows the work was really done."""

    seconds: float
    work: int
    cpu: float  # CPU seconds of the whole process (every thread) meanwhile


# ---------------------------------------------------------------------------------------- clips


def photos_by_label(faces: Path) -> dict[str, list[Path]]:
    """The ``<label>/*.jpg`` photos under ``faces``, sorted; empty if there are none."""
    if not faces.is_dir():
        return {}
    found = {d.name: sorted(d.glob("*.jpg")) for d in sorted(faces.iterdir()) if d.is_dir()}
    return {label: paths for label, paths in found.items() if paths}


def pick_photos(by_label: dict[str, list[Path]], n: int) -> list[tuple[str, np.ndarray]]:
    """``n`` (label, RGB photo) pairs, taking the labels in turn; the astronaut if there are no photos."""
    if not by_label:
        return [("happy", astronaut_head())] * n
    labels = list(by_label)
    picked = []
    for i in range(n):
        label = labels[i % len(labels)]
        paths = by_label[label]
        picked.append((label, load_photo(paths[(i // len(labels)) % len(paths)])))
    return picked


def to_h264(src: Path, dst: Path) -> None:
    """Transcode an OpenCV mp4v clip to H.264 / yuv420p, as a phone would have recorded it."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-an",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", str(dst)]
    subprocess.run(cmd, check=True)


def make_clips(by_label: dict[str, list[Path]], n: int, out: Path, codec: str) -> list[Path]:
    """Write ``n`` clips named ``<Label>_<id>.mp4`` into ``out`` (which must hold nothing else)."""
    out.mkdir(parents=True, exist_ok=True)
    clips = []
    with tempfile.TemporaryDirectory() as raw_dir:
        for i, (label, photo) in enumerate(pick_photos(by_label, n)):
            path = out / f"{label.capitalize()}_{i + 1:04d}.mp4"
            raw = path if codec == "mp4v" else Path(raw_dir) / path.name
            make_face_clip(photo, raw, seconds=4.0, fps=30.0, size=(640, 480), seed=i)
            if codec == "h264":
                to_h264(raw, path)
            clips.append(path)
    return clips


# -------------------------------------------------------------------------------------- methods


def each_frame(path: Path, use: Callable[[int, np.ndarray], None]) -> int:
    """``read()`` every frame of a clip, handing each (index, BGR frame) to ``use``; return the count."""
    cap = cv2.VideoCapture(str(path))
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return index
            use(index, frame)
            index += 1
    finally:
        cap.release()


def over_pool(clips: list[Path], workers: int, per_clip: Callable[[Path], int]) -> int:
    """Run ``per_clip`` on every clip over a fresh pool of ``workers`` threads; sum what they return."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(per_clip, clips))


def decode_clip(path: Path) -> int:
    return each_frame(path, lambda index, frame: None)


_seed_local = threading.local()


def seed_mesh() -> MeshFinder:
    """This thread's Face Mesh, in video mode as the seed configured it (one face, tracked from frame to
    frame, detection only when the face is lost), built on first use."""
    if not hasattr(_seed_local, "mesh"):
        _seed_local.mesh = MeshFinder(track=True)
    return _seed_local.mesh


def seed_clip(path: Path) -> int:
    """The seed's method on one clip: Face Mesh on every frame, crops of the sampled ones; crops made."""
    mesh, s = seed_mesh(), SEED_SETTINGS
    crops: list[np.ndarray] = []

    def use(index: int, bgr: np.ndarray) -> None:
        faces = find_faces(mesh, bgr)
        if (index % s.sequence_length) % s.interval or not faces:
            return
        h, w = bgr.shape[:2]
        box = square_box(faces[0], s.margin, w, h)
        crops.append(crop_grey(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), box, s.size))

    each_frame(path, use)
    return len(crops)


def prepare_run(clips_dir: Path, scratch: Path, workers: int) -> int:
    """The real `prepare` into a fresh folder, deleted afterwards; stacks made."""
    out = Path(tempfile.mkdtemp(prefix="stacks_", dir=scratch))
    try:
        result = run_prepare(PrepareConfig(source=clips_dir, out=out, workers=workers, force=True, progress=False))
        return len(result.rows)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def method_calls(clips_dir: Path, scratch: Path) -> dict[str, Callable[[int], int]]:
    """Each method as ``call(workers) -> work done``, all over the same clips."""
    clips = sorted(clips_dir.glob("*.mp4"))
    return {
        "decode": lambda w: over_pool(clips, w, decode_clip),
        "seed": lambda w: over_pool(clips, w, seed_clip),
        "prepare": lambda w: prepare_run(clips_dir, scratch, w),
    }


def timed(call: Callable[[int], int], workers: int) -> Run:
    with native_stderr_silenced():  # MediaPipe's C++ start-up lines; Python errors still raise
        t0, c0 = time.perf_counter(), time.process_time()
        work = call(workers)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return Run(seconds, work, cpu)


# ------------------------------------------------------------------------------------ measuring


Runs = dict[tuple[int, str], list[Run]]  # (workers, method) -> timed runs


def measure(calls: dict[str, Callable[[int], int]], workers: list[int], repeats: int) -> Runs:
    """Every (workers, method) once per repeat, the method order rotating between repeats."""
    runs: Runs = {(w, m): [] for w in workers for m in calls}
    names = list(calls)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for w in workers:
            for name in order:
                run = timed(calls[name], w)
                runs[(w, name)].append(run)
                print(f"  repeat {r + 1}/{repeats}  workers {w}  {name:<8} {run.seconds:7.2f} s", file=sys.stderr,
                      flush=True)
    return runs


def median_seconds(runs: list[Run]) -> float:
    return statistics.median(run.seconds for run in runs)


def median_cpu(runs: list[Run]) -> float:
    return statistics.median(run.cpu for run in runs)


def warm_libraries(clip: Path) -> None:
    """Load the decoder and both MediaPipe models once, untimed, so no method pays the first load."""
    with native_stderr_silenced():
        decode_clip(clip)
        seed_mesh().find(np.zeros((64, 64, 3), np.uint8))
        DetectionFinder().find(np.zeros((64, 64, 3), np.uint8))


def verdict(value: float, bound: float, op: str) -> str:
    return "PASS" if (value <= bound if op == "<=" else value >= bound) else "MISS"


def report(runs: Runs, workers: list[int], header: list[str]) -> str:
    lines = header + ["", f"{'median seconds':<16}" + "".join(f"{m:>10}" for m in METHODS)]
    for w in workers:
        lines.append(f"{f'workers {w}':<16}" + "".join(f"{median_seconds(runs[(w, m)]):>10.2f}" for m in METHODS))
    for w in workers:
        lines.append(f"{f'cpu s, workers {w}':<16}" + "".join(
            f"{median_cpu(runs[(w, m)]):>10.2f}" for m in METHODS))
    lines.append(f"{'work per run':<16}" + "".join(
        f"{runs[(workers[0], m)][0].work:>10}" for m in METHODS) + "   (frames / seed crops / stacks)")
    lines.append("")
    for w in workers:
        med = {m: median_seconds(runs[(w, m)]) for m in METHODS}
        for name, (num, den, bound, op) in TARGETS.items():
            ratio = med[num] / med[den]
            lines.append(f"workers {w}  {name:<17} {ratio:6.2f}   target {op} {bound:<4}  {verdict(ratio, bound, op)}")
        cpus = os.cpu_count() or 1
        floor = median_cpu(runs[(w, "prepare")]) / cpus
        lines.append(f"workers {w}  seed / prepare could reach {med['seed'] / floor:.2f} at most: prepare's CPU time "
                     f"spread evenly over all {cpus} cores")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="number of clips to make (one per photo)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each method per worker count")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="folder of <label>/*.jpg face photos")
    parser.add_argument("--codec", choices=("h264", "mp4v"), default="h264", help="codec of the clips")
    parser.add_argument("--keep", type=Path, help="make the clips in this (new or empty) folder and keep them")
    args = parser.parse_args()
    args.workers = [int(x) for x in args.workers.split(",") if x.strip()]
    if args.clips < 1 or args.repeats < 1 or not args.workers or min(args.workers) < 1:
        parser.error("--clips, --repeats and every --workers value must be >= 1")
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep} is not empty: prepare would read whatever else is there")
    return args


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="prepare_speed_") as tmp:
        scratch = Path(tmp)
        clips_dir = args.keep or scratch / "clips"
        by_label = photos_by_label(args.faces)
        source = args.faces if by_label else "scikit-image astronaut (no photos found)"
        print(f"making {args.clips} clips from {source} ...", file=sys.stderr, flush=True)
        clips = make_clips(by_label, args.clips, clips_dir, args.codec)
        header = [
            f"prepare speed  {datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"python {platform.python_version()}  opencv {cv2.__version__}  mediapipe {version('mediapipe')}  "
            f"cpus {os.cpu_count()}",
            f"clips {len(clips)}  codec {args.codec}  frames per clip {decode_clip(clips[0])}  640x480 @ 30 fps  "
            f"faces from {source}",
            f"repeats {args.repeats}  workers {','.join(map(str, args.workers))}  clips in {clips_dir}"
            + ("" if args.keep else " (deleted)"),
        ]
        warm_libraries(clips[0])
        runs = measure(method_calls(clips_dir, scratch), args.workers, args.repeats)
        print(report(runs, args.workers, header))


if __name__ == "__main__":
    try:
        main()
    finally:
        close_finders()  # while MediaPipe can still close them (not at interpreter exit)
