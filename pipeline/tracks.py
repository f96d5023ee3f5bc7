"""Pick one face per sequence when a frame shows several (or none).

Faces are linked frame to frame by overlap into tracks; the kept track has the largest sum over its
frames of confidence x box side: a face that is present in many frames, detected with confidence
and large wins (the person recording the clip, not a passer-by, nor a big false detection on a
textured wall that flickers in and out at low confidence). Frames where that track has no box borrow the nearest
earlier box (or, before its first appearance, its first box).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.faces import Box

MIN_LINK_IOU = 0.2


@dataclass
class _Track:
    boxes: dict[int, Box] = field(default_factory=dict)  # frame position -> box
    last: Box | None = None

    @property
    def weight(self) -> float:
        return sum(b.score * b.area ** 0.5 for b in self.boxes.values())


def _link(detections: list[list[Box]]) -> list[_Track]:
    tracks: list[_Track] = []
    for pos, boxes in enumerate(detections):
        open_tracks = [t for t in tracks if t.last is not None]
        taken: set[int] = set()
        # Greedy matching, largest faces first: good enough for a handful of faces.
        for box in sorted(boxes, key=lambda b: b.area, reverse=True):
            best, best_iou = None, MIN_LINK_IOU
            for i, track in enumerate(open_tracks):
                if i in taken:
                    continue
                iou = box.iou(track.last)  # type: ignore[arg-type]
                if iou >= best_iou:
                    best, best_iou = i, iou
            if best is None:
                track = _Track()
                tracks.append(track)
            else:
                taken.add(best)
                track = open_tracks[best]
            track.boxes[pos] = box
            track.last = box
    return tracks


def choose_face(detections: list[list[Box]]) -> tuple[list[Box | None], list[bool]]:
    """One box per frame for the main face, and whether that frame's box was really detected.

    Returns ``([None] * n, [False] * n)`` when no frame has a face.
    """
    n = len(detections)
    tracks = _link(detections)
    if not tracks:
        return [None] * n, [False] * n
    main = max(tracks, key=lambda t: t.weight)
    found = [pos in main.boxes for pos in range(n)]
    first = min(main.boxes)
    chosen: list[Box | None] = []
    previous: Box = main.boxes[first]
    for pos in range(n):
        previous = main.boxes.get(pos, previous)
        chosen.append(previous)
    return chosen, found
