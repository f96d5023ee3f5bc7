"""Which MediaPipe finder should `prepare` use? Detection rate, box agreement and cost, side by side.

The seed cropped with the extent of Face Mesh landmarks. `prepare` may use BlazeFace face
detection instead only if it finds faces as often and gives the same crop, faster. This prints, on
real labelled face photos (../shared/data/faces by default):
  - the share of photos where each finder finds a face,
  - the IoU of each finder's final crop (margin, square) with Face Mesh's crop,
  - the median milliseconds per call on a 640x480 frame holding the photo, measured in one run,
  - the framing that maps the detection box onto the mesh extent (``DetectionFinder.MESH_FRAMING``), re-measured.

    python benchmarks/detector_compare.py [--faces ../shared/data/faces] [--limit 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stacks.faces import DetectionFinder, MeshFinder, close_finders, square_box  # noqa: E402
from tests.fixtures.clips import load_photo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/faces")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--margin", type=float, default=0.1)
    args = parser.parse_args()
    photos = sorted(args.faces.rglob("*.jpg"))[: args.limit]
    if not photos:
        sys.exit(f"no .jpg photos under {args.faces}")
    finders = {"mesh": MeshFinder(), "detection": DetectionFinder()}
    raw = DetectionFinder()
    raw.MESH_FRAMING = (0.0, 0.0, 1.0, 1.0)  # the detector's own box, to measure the framing on
    framing: list[tuple[float, float, float, float]] = []
    found = {k: 0 for k in finders}
    ious = {k: [] for k in finders if k != "mesh"}
    times = {k: [] for k in finders}
    for path in photos:
        rgb = load_photo(path)
        frame = np.full((480, 640, 3), 110, np.uint8)
        scale = 400 / max(rgb.shape[:2])
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = rgb.shape[:2]
        y0, x0 = (480 - h) // 2, (640 - w) // 2
        frame[y0:y0 + h, x0:x0 + w] = rgb
        boxes = {}
        for name, finder in finders.items():
            t = time.perf_counter()
            faces = finder.find(frame)
            times[name].append(time.perf_counter() - t)
            if faces:
                found[name] += 1
                boxes[name] = square_box(max(faces, key=lambda b: b.area), args.margin, 640, 480)
        mesh_faces, det_faces = finders["mesh"].find(frame), raw.find(frame)
        if mesh_faces and det_faces:
            m, d = max(mesh_faces, key=lambda b: b.area), max(det_faces, key=lambda b: b.area)
            framing.append(((m.center[0] - d.center[0]) / d.width, (m.center[1] - d.center[1]) / d.height,
                            m.width / d.width, m.height / d.height))
        for name in ious:
            if name in boxes and "mesh" in boxes:
                ious[name].append(boxes[name].iou(boxes["mesh"]))
    n = len(photos)
    print(f"{n} photos from {args.faces}")
    print(f"{'finder':<10} {'found':>7} {'IoU vs mesh (median / p10)':>28} {'ms/frame (median)':>18}")
    for name in finders:
        iou = ious.get(name)
        iou_txt = f"{statistics.median(iou):.3f} / {np.percentile(iou, 10):.3f}" if iou else "-"
        print(f"{name:<10} {found[name] / n:>7.1%} {iou_txt:>28} {statistics.median(times[name]) * 1000:>18.2f}")
    ratio = statistics.median(times["mesh"]) / statistics.median(times["detection"])
    print(f"detection is {ratio:.2f}x faster than mesh per frame")
    medians = tuple(round(statistics.median(v), 3) for v in zip(*framing))
    print(f"framing of the mesh extent on the detection box over {len(framing)} photos (dx, dy, width scale, "
          f"height scale; medians): {medians}; DetectionFinder.MESH_FRAMING = {DetectionFinder.MESH_FRAMING}")


if __name__ == "__main__":
    try:
        main()
    finally:
        close_finders()  # while MediaPipe can still close them (not at interpreter exit)
