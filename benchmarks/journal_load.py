"""How many journal clips a second does the server take, next to a plain `predict_file` loop on the same clips?

Starts `cli.py journal` on 127.0.0.1 (a free port, a fresh data folder), then posts the same N clips to
POST /api/entries from 1, 4 and 8 concurrent clients. Each clip is a 4 s 640x480 H.264 journal clip of a
real face photo (scikit-image's astronaut, each with its own drift). In the same run, the same clips go
through a plain in-process `predict_file` loop with the same model: the floor the server is measured
against, so that the ratio means the same on any machine.

Prints, per concurrency: clips/s, p50/p95 latency, failed requests, and the server's throughput as a
ratio of the plain loop's (target >= 0.8); then the server's peak resident memory (VmHWM).
Everything goes to 127.0.0.1; the request loops are bounded in count and time.

    python benchmarks/journal_load.py [--clips 16] [--concurrency 1,4,8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stacks  # noqa: E402, F401  (quiet native logging before cv2 and mediapipe load)
from benchmarks.prepare_speed import to_h264  # noqa: E402
from models.served import load_serving_model  # noqa: E402
from pipeline.serve.predict import predict_file  # noqa: E402
from tests.fixtures.clips import astronaut_head, make_face_clip  # noqa: E402
from tests.fixtures.journal_server import JournalServer, multipart  # noqa: E402

TARGET_RATIO = 0.8
TIME_LIMIT = 600.0  # seconds for the whole load phase; the run stops sending after that


def make_clips(folder: Path, count: int) -> list[Path]:
    head = astronaut_head()
    clips = []
    for i in range(count):
        raw = make_face_clip(head, folder / f"raw_{i}.mp4", seconds=4.0, size=(640, 480), seed=i).path
        to_h264(raw, folder / f"clip_{i}.mp4")
        clips.append(folder / f"clip_{i}.mp4")
    return clips


def plain_loop(clips: list[Path], model_path: Path | None, repeats: int) -> float:
    """Best clips/s of ``predict_file`` over the clips, model loaded once (as the server does)."""
    model = load_serving_model(model_path)
    predict_file(clips[0], model)  # warm: MediaPipe graph, first torch call
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for clip in clips:
            predict_file(clip, model)
        rates.append(len(clips) / (time.perf_counter() - start))
    return max(rates)


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(server: JournalServer, bodies: list[tuple[bytes, str]], concurrency: int,
         deadline: float) -> tuple[float, list[float], int]:
    """(clips/s, latencies of the successful requests, failed requests)."""

    def post(body: tuple[bytes, str]) -> tuple[bool, float]:
        if time.monotonic() > deadline:
            return False, 0.0
        start = time.perf_counter()
        try:
            status, _, _ = server.request("POST", "api/entries", body[0], {"Content-Type": body[1]}, timeout=120)
        except OSError:
            status = 0
        return status == 201, time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(post, bodies))
    wall = time.perf_counter() - start
    ok = [latency for good, latency in results if good]
    return len(ok) / wall, ok, len(results) - len(ok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16, help="clips sent at each concurrency")
    parser.add_argument("--concurrency", default="1,4,8", help="concurrent clients, comma-separated")
    parser.add_argument("--repeats", type=int, default=2, help="passes of the plain loop (best is kept)")
    parser.add_argument("--model", type=Path, default=None, help="model (default: the shipped one)")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        distinct = make_clips(folder, min(args.clips, 8))
        clips = [distinct[i % len(distinct)] for i in range(args.clips)]
        bodies = [multipart({"clip": ("clip.mp4", clip.read_bytes())}, {}) for clip in clips]
        extra = ["--model", str(args.model)] if args.model else []
        with JournalServer(folder / "journal", args=extra) as server:
            server.request("POST", "api/predict", bodies[0][0], {"Content-Type": bodies[0][1]})  # warm up
            deadline = time.monotonic() + TIME_LIMIT
            rows = [(c, *load(server, bodies, c, deadline)) for c in levels]
            assert server.proc is not None
            peak = peak_memory_mb(server.proc.pid)
        floor = plain_loop(clips, args.model, args.repeats)

    print(f"journal load: {args.clips} clips (4 s, 640x480 H.264) per level, server on 127.0.0.1")
    print(f"plain predict_file loop: {floor:.2f} clips/s")
    print(f"{'clients':>7} {'clips/s':>8} {'p50 s':>7} {'p95 s':>7} {'failed':>6} {'ratio':>6}")
    for concurrency, rate, latencies, failed in rows:
        p50 = statistics.median(latencies) if latencies else float("nan")
        p95 = statistics.quantiles(latencies, n=20)[18] if len(latencies) >= 2 else float("nan")
        print(f"{concurrency:>7} {rate:>8.2f} {p50:>7.3f} {p95:>7.3f} {failed:>6} {rate / floor:>6.2f}")
    best = max(rate for _, rate, _, _ in rows) / floor
    print(f"server peak memory: {peak:.0f} MB")
    print(f"ratio server/plain (best level): {best:.2f} (target >= {TARGET_RATIO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
