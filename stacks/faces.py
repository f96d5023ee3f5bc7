"""Find faces with MediaPipe and turn them into square crop boxes.

MediaPipe graphs are not thread-safe, and building one costs far more than running it on a frame,
so each thread builds one finder the first time it needs it and reuses it for every clip
(``thread_finder``); `prepare` and `predict` search on a companion thread of the decoding thread
(``BackgroundFinder``), which holds that thread's graph. Both finders are stateless between calls
(no tracking), so a finder reused across clips cannot carry one clip's face position into the next.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from stacks.settings import Detector


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels, ``x1``/``y1`` exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        return max(0.0, self.y1 - self.y0)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def to_list(self) -> list[int]:
        return [int(round(v)) for v in (self.x0, self.y0, self.x1, self.y1)]


def square_box(face: Box, margin: float, frame_w: int, frame_h: int) -> Box:
    """Grow ``face`` by ``margin`` of its size on each side, make it square, keep it in the frame.

    The square keeps the box centre unless the frame edge forces a shift; a face larger than the
    frame's short side gets the largest square that fits.
    """
    w, h = face.width * (1 + 2 * margin), face.height * (1 + 2 * margin)
    side = min(max(w, h, 1.0), frame_w, frame_h)
    cx, cy = face.center
    x0 = min(max(cx - side / 2, 0.0), frame_w - side)
    y0 = min(max(cy - side / 2, 0.0), frame_h - side)
    x0, y0, side_i = int(round(x0)), int(round(y0)), int(round(side))
    side_i = max(1, min(side_i, frame_w - x0, frame_h - y0))
    return Box(x0, y0, x0 + side_i, y0 + side_i, face.score)


def center_box(frame_w: int, frame_h: int) -> Box:
    """The largest centred square: the crop used by ``--on-no-face center``."""
    side = min(frame_w, frame_h)
    x0, y0 = (frame_w - side) // 2, (frame_h - side) // 2
    return Box(x0, y0, x0 + side, y0 + side, 0.0)


def crop_grey(frame: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Cut ``box`` out of a grey or BGR frame, grey it and resize it to ``size`` x ``size`` with INTER_AREA.

    A BGR frame is greyed after the cut: the same pixels as greying the whole frame, for a fraction
    of the work.
    """
    x0, y0, x1, y1 = box.to_list()
    patch = frame[y0:y1, x0:x1]
    if patch.size == 0:
        raise ValueError(f"empty crop box {box} for frame {frame.shape}")
    if patch.ndim == 3:
        patch = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY)
    if patch.shape[0] == size and patch.shape[1] == size:
        return np.ascontiguousarray(patch)
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)


class FaceFinder(Protocol):
    def find(self, rgb: np.ndarray) -> list[Box]:
        """All faces in an RGB frame, in pixels, before margin and squaring."""
        ...


class DetectionFinder:
    """MediaPipe Face Detection (BlazeFace short-range, for faces within ~2 m: a selfie clip).

    Its box is tighter than the landmark extent the seed cropped with, so it is mapped onto that
    framing with ``MESH_FRAMING`` (centre shift and width/height scale as fractions of the box),
    the medians measured on 495 real photos by ``benchmarks/detector_compare.py``. Frames are
    shrunk to ``DETECT_SIDE`` pixels first: the network sees 128x128 anyway, and a smaller copy is
    cheaper to hand to MediaPipe. Boxes are returned in the original frame's pixels.

    The graph is the one ``mp.solutions.face_detection`` runs, with the same options, so its boxes
    are identical; but it runs synchronously through MediaPipe's task runner, as its Tasks API
    does, instead of through the Solutions API. That call returns the detections directly, where
    the Solutions API waits for the graph to go idle, has a Python callback collect them on a graph
    thread (taking the GIL from the decoding threads) and builds a new result class on every call:
    ~10% less CPU per frame, more when clips run in parallel (``benchmarks/prepare_speed.py``).
    """

    MESH_FRAMING = (0.0, -0.047, 0.94, 1.07)  # dx, dy, width scale, height scale
    DETECT_SIDE = 256

    # 0.6, not MediaPipe's 0.5: on the 500 real photos recall is the same (99.8%), and textured
    # backgrounds (walls, foliage) give false faces scoring 0.50-0.58.
    def __init__(self, min_confidence: float = 0.6) -> None:
        self.min_confidence = min_confidence
        self._runner = _detection_runner(min_confidence)
        self._timestamp = 0  # the graph wants strictly increasing packet timestamps
        _keep_alive_in_forks(self)

    def find(self, rgb: np.ndarray) -> list[Box]:
        from mediapipe.python import packet_creator, packet_getter
        from mediapipe.python._framework_bindings.image_frame import ImageFormat

        h, w = rgb.shape[:2]
        scale = self.DETECT_SIDE / max(h, w)
        if scale < 1.0:
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_LINEAR)
        self._timestamp += 1
        image = packet_creator.create_image_frame(data=np.ascontiguousarray(rgb), image_format=ImageFormat.SRGB)
        found = self._runner.process({"image": image.at(self._timestamp)})["detections"]
        detections = [] if found.is_empty() else packet_getter.get_proto_list(found)
        dx, dy, sw, sh = self.MESH_FRAMING
        boxes = []
        for det in detections:
            score = float(det.score[0]) if det.score else 1.0
            if score < self.min_confidence:  # MediaPipe 0.10.21 reports some below its threshold
                continue
            rb = det.location_data.relative_bounding_box
            cx, cy = (rb.xmin + rb.width * (0.5 + dx)) * w, (rb.ymin + rb.height * (0.5 + dy)) * h
            bw, bh = rb.width * sw * w, rb.height * sh * h
            box = Box(max(cx - bw / 2, 0.0), max(cy - bh / 2, 0.0), min(cx + bw / 2, w), min(cy + bh / 2, h), score)
            if box.area > 0:
                boxes.append(box)
        return boxes

    def close(self) -> None:
        self._runner.close()


_live_finders: weakref.WeakSet[DetectionFinder] = weakref.WeakSet()
_live_lock = threading.Lock()
_pinned_for_fork: list[DetectionFinder] = []


def _keep_alive_in_forks(finder: DetectionFinder) -> None:
    """Never let a forked child free ``finder``'s graph.

    A child forked with Python's fork handling (``os.fork``, ``subprocess`` with ``preexec_fn``, as
    Ray starts its processes) drops the other threads' state, and with it the finders they hold in
    thread-locals. Freeing a graph joins its worker threads, which do not exist in the child: a
    segfault. So the finders alive at the fork are referenced from a module list that the child
    keeps (until it execs or exits) and the parent clears as soon as the fork is done.
    """
    with _live_lock:
        _live_finders.add(finder)


def _pin_before_fork() -> None:
    with _live_lock:
        _pinned_for_fork[:] = list(_live_finders)


def _fresh_lock_in_child() -> None:
    global _live_lock
    _live_lock = threading.Lock()  # another thread may have held it at the fork: it never returns here


os.register_at_fork(before=_pin_before_fork, after_in_parent=_pinned_for_fork.clear,
                    after_in_child=_fresh_lock_in_child)


def _detection_runner(min_confidence: float):  # -> mediapipe TaskRunner
    """The Solutions API's short-range face detection graph, with its options, in a task runner.

    Built as ``mp.solutions.face_detection.FaceDetection`` builds it (the packaged graph, expanded
    and validated, the score threshold set in its options), so the two give identical detections.
    """
    import mediapipe as mp
    from mediapipe.framework import calculator_pb2
    from mediapipe.modules.face_detection import face_detection_pb2
    from mediapipe.python._framework_bindings import resource_util, task_runner, validated_graph_config
    from mediapipe.python.solutions import face_detection

    package_root = Path(mp.__file__).resolve().parent.parent
    resource_util.set_resource_dir(str(package_root))  # where the graph finds its .tflite model
    validated = validated_graph_config.ValidatedGraphConfig()
    validated.initialize(binary_graph_path=str(package_root / face_detection._SHORT_RANGE_GRAPH_FILE_PATH))
    config = calculator_pb2.CalculatorGraphConfig()
    config.ParseFromString(validated.binary_config)
    options = face_detection_pb2.FaceDetectionOptions()
    for extension in config.graph_options:
        if extension.Is(options.DESCRIPTOR):
            extension.Unpack(options)
            options.min_score_thresh = min_confidence
            extension.Pack(options)
            break
    else:
        config.graph_options.add().Pack(face_detection_pb2.FaceDetectionOptions(min_score_thresh=min_confidence))
    return task_runner.TaskRunner.create(config)


class MeshFinder:
    """MediaPipe Face Mesh, box = extent of the 468 landmarks (the seed's method).

    ``static_image_mode=True``: every call detects afresh, so no tracking state leaks between the
    clips a reused instance sees.
    """

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5) -> None:
        import mediapipe as mp

        self._model = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=max_faces, refine_landmarks=False,
            min_detection_confidence=min_confidence,
        )

    def find(self, rgb: np.ndarray) -> list[Box]:
        h, w = rgb.shape[:2]
        result = self._model.process(rgb)
        boxes = []
        for face in result.multi_face_landmarks or []:
            pts = np.array([(p.x, p.y) for p in face.landmark], dtype=np.float32)
            x0, y0 = np.clip(pts.min(axis=0), 0, 1)
            x1, y1 = np.clip(pts.max(axis=0), 0, 1)
            box = Box(float(x0 * w), float(y0 * h), float(x1 * w), float(y1 * h))
            if box.area > 0:
                boxes.append(box)
        return boxes


def find_faces(finder: FaceFinder, bgr: np.ndarray) -> list[Box]:
    """Faces in a BGR frame (MediaPipe wants RGB)."""
    return finder.find(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def make_finder(detector: Detector) -> FaceFinder:
    if detector == "detection":
        return DetectionFinder()
    if detector == "mesh":
        return MeshFinder()
    raise ValueError(f"unknown detector {detector!r}: use 'detection' or 'mesh'")


_local = threading.local()


def thread_finder(detector: Detector) -> FaceFinder:
    """This thread's finder for ``detector``, built on first use and reused afterwards."""
    cache: dict[str, FaceFinder] | None = getattr(_local, "finders", None)
    if cache is None:
        cache = _local.finders = {}
    if detector not in cache:
        cache[detector] = make_finder(detector)
    return cache[detector]


class BackgroundFinder:
    """A finder that runs on a thread of its own, so that its caller goes on decoding meanwhile.

    A MediaPipe call spends most of its ~2 ms waiting on its graph's threads while the decoder sits
    idle; handing each sampled frame over as soon as it is decoded overlaps the two. The graph is
    built and used on the one companion thread only (``thread_finder`` there), so it stays
    single-threaded as MediaPipe requires.
    """

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces")

    def submit(self, bgr: np.ndarray) -> Future[list[Box]]:
        """Start searching a BGR frame; the frame must not change until the result is in."""
        return self._pool.submit(lambda: find_faces(thread_finder(self.detector), bgr))

    def find(self, rgb: np.ndarray) -> list[Box]:
        return self._pool.submit(lambda: thread_finder(self.detector).find(rgb)).result()


def thread_background_finder(detector: Detector) -> BackgroundFinder:
    """This thread's ``BackgroundFinder`` for ``detector``, built on first use and reused afterwards."""
    cache: dict[str, BackgroundFinder] | None = getattr(_local, "background", None)
    if cache is None:
        cache = _local.background = {}
    if detector not in cache:
        cache[detector] = BackgroundFinder(detector)
    return cache[detector]


def quiet_thread_finder(detector: Detector) -> FaceFinder:
    """``thread_finder``, with MediaPipe's start-up lines kept off the terminal the first time."""
    cache = getattr(_local, "finders", None)
    if cache is not None and detector in cache:
        return cache[detector]
    with native_stderr_silenced():
        finder = thread_finder(detector)
        finder.find(np.zeros((64, 64, 3), np.uint8))  # the delegate logs on the first frame
    return finder


def quiet_background_finder(detector: Detector) -> BackgroundFinder:
    """``thread_background_finder``, its graph built (quietly) before it is returned."""
    cache = getattr(_local, "background", None)
    if cache is not None and detector in cache:
        return cache[detector]
    finder = thread_background_finder(detector)
    with native_stderr_silenced():
        finder.find(np.zeros((64, 64, 3), np.uint8))
    return finder


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: MediaPipe's C++ start-up chatter bypasses Python."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start_warm_up(detector: Detector, workers: int, submit: Callable[..., Future],
                  build_one: Callable[[], object] | None = None) -> list[Future]:
    """Start building one ``BackgroundFinder`` (and its graph) on each of ``workers`` pool threads, so
    that no clip waits for one, and return the futures to wait on.

    A barrier holds every task until all have started, so each lands on a different thread; the pool
    must be fresh (no idle threads yet), so that every task starts a thread of its own. A build that
    fails breaks the barrier at once (the others would otherwise wait out its timeout), and only its own
    future raises. ``build_one``: what each task builds (this thread's finder; tests pass another).
    """
    barrier = threading.Barrier(workers)
    blank = np.zeros((64, 64, 3), np.uint8)

    def build() -> None:
        try:
            if build_one is None:
                thread_background_finder(detector).find(blank)
            else:
                build_one()
        except BaseException:
            barrier.abort()
            raise
        try:
            barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            pass  # another task failed: its future says why

    return [submit(build) for _ in range(workers)]
