"""Pick one face per sequence when a frame shows several (or none).

Faces are linked frame to frame into tracks, by overlap, or, for a face that moved further than its
boxes overlap between two samples (a fast pan, or samples 1/3 s apart), by a centre shift of at most one
face side at a similar size; the kept track has the largest sum over its
frames of confidence x box side: a face that is present in many frames, detected with confidence
and large wins (the person recording the clip, not a passer-by, nor a big false detection on a
textured wall that flickers in and out at low confidence). Frames where that track has no box borrow the nearest
earlier box (or, before its first appearance, its first box).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stacks.faces import Box

MIN_LINK_IOU = 0.2
MAX_LINK_SHIFT = 1.0  # centre shift, in face sides, of a face whose boxes no longer overlap enough
MAX_LINK_SCALE = 1.5  # side ratio between two boxes linked by their shift


def _affinity(box: Box, last: Box) -> float | None:
    """How well ``box`` continues a track that ended in ``last``: above 1 by overlap, up to 1 by a
    short shift at a similar size (overlap always wins), None when it does not."""
    iou = box.iou(last)
    if iou >= MIN_LINK_IOU:
        return 1.0 + iou
    side, last_side = box.area ** 0.5, last.area ** 0.5
    if min(side, last_side) <= 0 or max(side, last_side) / min(side, last_side) > MAX_LINK_SCALE:
        return None
    (x, y), (lx, ly) = box.center, last.center
    shift = ((x - lx) ** 2 + (y - ly) ** 2) ** 0.5 / ((side + last_side) / 2)
    return 1.0 - shift if shift <= MAX_LINK_SHIFT else None


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
            best, best_score = None, -1.0
            for i, track in enumerate(open_tracks):
                if i in taken:
                    continue
                score = _affinity(box, track.last)  # type: ignore[arg-type]
                if score is not None and score >= best_score:
                    best, best_score = i, score
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
