"""Find faces with MediaPipe and turn them into square crop boxes.

MediaPipe's detectors are not to be shared between threads at once, and building one costs far more than
running it on a frame, so each thread takes one finder the first time it needs it and reuses it for every
clip (``thread_finder``); `prepare` and `predict` search on a companion thread of the decoding thread
(``BackgroundFinder``), which holds that thread's finder. The stages' finders are stateless between calls
(no tracking; ``MeshFinder(track=True)`` is the benchmark's seed method), so a finder reused across clips
cannot carry one clip's face position into the next.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
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


MODELS = Path(__file__).resolve().parent / "face_models"  # vendored: see face_models/README.md
DETECTOR_MODEL = ("face_detection_short_range.tflite",
                  "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8")
LANDMARK_MODEL = ("face_landmark.tflite", "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814")


class FaceModelError(RuntimeError):
    """A vendored face model is missing or not the file it should be (one line from the CLI)."""


@functools.cache
def model_bytes(model: tuple[str, str]) -> bytes:
    """A vendored model's bytes, once per process, checked against its sha256."""
    name, sha256 = model
    path = MODELS / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FaceModelError(f"the face model {path} cannot be read ({exc.strerror}): restore it from git "
                             "(git checkout -- stacks/face_models)") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise FaceModelError(f"the face model {path} is not the vendored file (sha256 differs): restore it from "
                             "git (git checkout -- stacks/face_models)")
    return data


def _tasks_face_detector(min_confidence: float):  # -> mediapipe.tasks.python.vision.FaceDetector
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=model_bytes(DETECTOR_MODEL)),
                                         running_mode=vision.RunningMode.IMAGE,
                                         min_detection_confidence=min_confidence)
    return vision.FaceDetector.create_from_options(options)


def _mp_image(rgb: np.ndarray):  # -> mediapipe.Image
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))


class _TasksFinder:
    """What both finders share: a Tasks ``FaceDetector``, closed once, in its own process only.

    Every detector is held by this module until ``close_finders`` closes it (on the way out of ``cli.py``, the
    benchmarks and the test session), never freed by the garbage collector: MediaPipe 1.2.3 runs each
    detector's calls on a thread pool of its own, and when a detector ends up in a reference cycle the
    collector first lets that pool's thread go, then the detector's finaliser waits on it for ever (a
    ``predict`` hung so in the test suite). Held, a detector is also never freed in a child forked with
    Python's fork handling (``os.fork``, ``subprocess`` with ``preexec_fn`` as Ray starts its processes),
    where closing it would wait on a thread the child does not have (tests/test_fork_safety.py).

    Closing prints a line of MediaPipe's on fd 2, which is the whole process's: the finders of threads
    that end are handed to the next thread (``_Lease``) rather than closed while others may print.
    """

    def __init__(self, min_confidence: float) -> None:
        self._detector = _tasks_face_detector(min_confidence)
        self._closing = threading.Lock()  # two threads may close it at once (a crash in MediaPipe)
        self._closed = False
        self._pid = os.getpid()
        _detectors.append((self._pid, self._detector))
        _open_finders.append(weakref.ref(self))

    @property
    def usable(self) -> bool:
        """Open, and built in this process."""
        return not self._closed and self._pid == os.getpid()

    def close(self) -> None:
        with self._closing:
            if self._closed or self._pid != os.getpid():
                return
            self._closed = True
            with native_stderr_silenced():
                self._detector.close()


# Every detector built, with the process that built it (see ``_TasksFinder``), and every finder (weakly).
# list.append and a copy are atomic under the GIL, where iterating a WeakSet that another thread changes is not.
_detectors: list[tuple[int, object]] = []
_open_finders: list[weakref.ref[_TasksFinder]] = []


def close_finders() -> None:
    """Close every finder and detector of this process. Entry points call it on the way out: at interpreter
    exit it is too late, the thread pools MediaPipe closes through are already shut."""
    _spares.clear()
    for ref in _open_finders[:]:
        finder = ref()
        if finder is not None:
            with contextlib.suppress(Exception):
                finder.close()
    _open_finders[:] = [ref for ref in _open_finders if (f := ref()) is not None and f.usable]
    here = os.getpid()
    for pid, detector in _detectors[:]:
        if pid == here:
            with contextlib.suppress(Exception), native_stderr_silenced():
                detector.close()  # idempotent: those of the finders above are closed already
    _detectors[:] = [(pid, detector) for pid, detector in _detectors if pid != here]


class DetectionFinder(_TasksFinder):
    """BlazeFace short-range (faces within ~2 m: a selfie clip) through MediaPipe Tasks' ``FaceDetector``.

    Its box is tighter than the landmark extent the seed cropped with, so it is mapped onto that framing
    with ``MESH_FRAMING`` (centre shift and width/height scale as fractions of the box), the medians
    measured on 495 real photos by ``benchmarks/detector_compare.py``. Frames are shrunk to
    ``DETECT_SIDE`` pixels first (the network sees 128x128 anyway) and padded to a square, the detector's
    own letterbox, so its input is unchanged and a face cut by the short side's edge keeps its box.
    Boxes are returned in the original frame's pixels.

    The detector runs at score 0.5 and faces under ``min_confidence`` are dropped afterwards: the
    weighted non-maximum suppression averages every candidate above the detector's threshold into a box,
    and 0.5 is what the boxes (and ``MESH_FRAMING``, and every stack made so far) were calibrated at.
    Tasks gives whole pixels of the shrunk frame, truncated: +0.5 px undoes the bias, and the boxes stay
    within ~2.5 px of the old float ones on 640x480 frames (tests/test_faces_tracks_stacks.py).
    """

    MESH_FRAMING = (0.0, -0.047, 0.94, 1.07)  # dx, dy, width scale, height scale
    DETECT_SIDE = 256
    DETECTOR_THRESHOLD = 0.5

    # 0.6, not MediaPipe's 0.5: on the 500 real photos recall is the same (99.8%), and textured
    # backgrounds (walls, foliage) give false faces scoring 0.50-0.58.
    def __init__(self, min_confidence: float = 0.6) -> None:
        self.min_confidence = min_confidence
        super().__init__(min(self.DETECTOR_THRESHOLD, min_confidence))

    def find(self, rgb: np.ndarray) -> list[Box]:
        return [box for box, _ in self.find_with_keypoints(rgb)]

    def find_bgr(self, bgr: np.ndarray) -> list[Box]:
        """``find`` on a BGR frame: shrunk first, then turned to RGB, the same pixels as the other way round
        (a resize works on each channel alone) for a sixth of the conversion."""
        return [box for box, _ in self.find_with_keypoints(bgr, bgr=True)]

    def find_with_keypoints(self, rgb: np.ndarray, bgr: bool = False) -> list[tuple[Box, np.ndarray]]:
        """Each face's box and its six keypoints in frame pixels (the person's right eye, left eye, nose
        tip, mouth, right ear, left ear). ``bgr``: the frame is BGR."""
        h, w = rgb.shape[:2]
        small = rgb
        scale = self.DETECT_SIDE / max(h, w)
        if scale < 1.0:
            small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_LINEAR)
        if bgr:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        sh, sw = small.shape[:2]
        side = max(sh, sw)
        top, left = (side - sh) // 2, (side - sw) // 2
        if sh != sw:
            small = cv2.copyMakeBorder(small, top, side - sh - top, left, side - sw - left, cv2.BORDER_CONSTANT,
                                       value=(0, 0, 0))
        fx, fy = w / sw, h / sh
        dx, dy, scale_w, scale_h = self.MESH_FRAMING
        found = []
        for det in self._detector.detect(_mp_image(small)).detections:
            score = det.categories[0].score if det.categories else 1.0
            if score is None or score < self.min_confidence:
                continue
            bb = det.bounding_box
            x0 = (bb.origin_x + (0.5 if bb.origin_x > 0 else 0.0) - left) * fx
            y0 = (bb.origin_y + (0.5 if bb.origin_y > 0 else 0.0) - top) * fy
            bw, bh = (bb.width + 0.5) * fx, (bb.height + 0.5) * fy
            cx, cy = x0 + bw * (0.5 + dx), y0 + bh * (0.5 + dy)
            bw, bh = bw * scale_w, bh * scale_h
            box = Box(max(cx - bw / 2, 0.0), max(cy - bh / 2, 0.0), min(cx + bw / 2, w), min(cy + bh / 2, h),
                      float(score))
            if box.area > 0:
                points = np.array([((k.x * side - left) * fx, (k.y * side - top) * fy) for k in det.keypoints or []],
                                  np.float32).reshape(-1, 2)
                found.append((box, points))
        return found



class MeshFinder(_TasksFinder):
    """The seed's method: box = extent of Face Mesh's 468 landmarks.

    As MediaPipe's Face Mesh does it: BlazeFace finds each face, a square 1.5x its box, turned so that the
    eyes are level, is cut out at 192x192, and the landmark model (run by LiteRT's interpreter: MediaPipe's
    Tasks API has no landmark task that runs offline) places the points, which are mapped back into the
    frame. ``track=False`` (what ``--detector mesh`` uses): every frame is searched afresh, so a finder
    reused across clips carries nothing from one to the next. ``track=True`` is the seed's video mode for
    one face: the next frame's square comes from this frame's landmarks, and the detector runs again only
    when the landmark model no longer sees a face (``benchmarks/prepare_speed.py``).
    """

    INPUT = 192
    EYES = (33, 263)  # the outer corners of the person's right and left eye

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5, track: bool = False) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.max_faces = 1 if track else max_faces
        self.track = track
        super().__init__(min_confidence)
        self._landmarks = Interpreter(model_content=model_bytes(LANDMARK_MODEL), num_threads=1)
        self._landmarks.allocate_tensors()
        self._input = self._landmarks.get_input_details()[0]["index"]
        outputs = {d["shape"][-1]: d["index"] for d in self._landmarks.get_output_details()}
        self._points, self._presence = outputs[1404], outputs[1]
        self._tracked: tuple[float, float, float, float] | None = None  # centre x, y, side, angle

    def find(self, rgb: np.ndarray) -> list[Box]:
        h, w = rgb.shape[:2]
        if self._tracked is not None:
            points, present = self._landmarks_in(rgb, *self._tracked)
            if present:
                self._tracked = self._square_of(points)
                return [box] if (box := _extent(points, w, h)).area > 0 else []
            self._tracked = None
        boxes = []
        for points in self.landmarks(rgb):
            if self.track:
                self._tracked = self._square_of(points)
            if (box := _extent(points, w, h)).area > 0:
                boxes.append(box)
        return boxes

    def landmarks(self, rgb: np.ndarray) -> list[np.ndarray]:
        """The 468 landmarks (468x2, frame pixels) of each face the detector finds, searched afresh."""
        h, w = rgb.shape[:2]
        faces = []
        for det in self._detector.detect(_mp_image(rgb)).detections[:self.max_faces]:
            bb = det.bounding_box
            (rx, ry), (lx, ly) = [(k.x * w, k.y * h) for k in det.keypoints[:2]]  # the person's right, left eye
            points, _ = self._landmarks_in(rgb, bb.origin_x + bb.width / 2, bb.origin_y + bb.height / 2,
                                           max(bb.width, bb.height) * 1.5, math.atan2(ly - ry, lx - rx))
            faces.append(points)
        return faces

    def _landmarks_in(self, rgb: np.ndarray, cx: float, cy: float, side: float,
                      angle: float) -> tuple[np.ndarray, bool]:
        """The 468 landmarks (frame pixels) in a turned square, and whether the model sees a face there."""
        c, s = math.cos(angle) * side / self.INPUT, math.sin(angle) * side / self.INPUT
        to_frame = np.array([[c, -s, 0.0], [s, c, 0.0]])  # model input pixel -> frame pixel
        to_frame[:, 2] = (cx, cy) - to_frame[:, :2] @ (self.INPUT / 2, self.INPUT / 2)
        crop = cv2.warpAffine(rgb, to_frame, (self.INPUT, self.INPUT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
        self._landmarks.set_tensor(self._input, (crop.astype(np.float32) / 255.0)[None])
        self._landmarks.invoke()
        points = self._landmarks.get_tensor(self._points).reshape(468, 3)[:, :2] @ to_frame[:, :2].T + to_frame[:, 2]
        presence = float(self._landmarks.get_tensor(self._presence).reshape(()))
        return points, presence > 0.0  # a logit: > 0 is a face probability over 0.5

    def _square_of(self, points: np.ndarray) -> tuple[float, float, float, float]:
        """The next frame's square from this frame's landmarks: their extent's centre, 1.5x its long side."""
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        (rx, ry), (lx, ly) = points[self.EYES[0]], points[self.EYES[1]]
        return (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 1.5, math.atan2(ly - ry, lx - rx)


def _extent(points: np.ndarray, w: int, h: int) -> Box:
    x0, y0 = np.clip(points.min(axis=0), 0, (w, h))
    x1, y1 = np.clip(points.max(axis=0), 0, (w, h))
    return Box(float(x0), float(y0), float(x1), float(y1))


def find_faces(finder: FaceFinder, bgr: np.ndarray) -> list[Box]:
    """Faces in a BGR frame (MediaPipe wants RGB)."""
    if isinstance(finder, DetectionFinder):
        return finder.find_bgr(bgr)
    return finder.find(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def make_finder(detector: Detector) -> FaceFinder:
    if detector == "detection":
        return DetectionFinder()
    if detector == "mesh":
        return MeshFinder()
    raise ValueError(f"unknown detector {detector!r}: use 'detection' or 'mesh'")


_local = threading.local()
_spares: dict[str, list[FaceFinder]] = {}  # finders whose threads ended, for the next thread that needs one


class _Lease:
    """A thread's hold on a finder. When the thread ends, its thread-locals go, and with them the lease,
    which hands the finder to the next thread instead of closing it (see ``_TasksFinder``)."""

    __slots__ = ("finder", "detector")

    def __init__(self, finder: FaceFinder, detector: Detector) -> None:
        self.finder, self.detector = finder, detector

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown this module's globals are gone
            if _usable(self.finder):
                _spares.setdefault(self.detector, []).append(self.finder)  # atomic: no lock in a finaliser


def _usable(finder: FaceFinder) -> bool:
    return getattr(finder, "usable", True)


def _spare(detector: Detector) -> FaceFinder | None:
    spares = _spares.get(detector, [])
    while spares:
        try:
            finder = spares.pop()
        except IndexError:  # another thread took the last one
            return None
        if _usable(finder):
            return finder
    return None


def _live(detector: Detector) -> FaceFinder | None:
    lease = getattr(_local, "finders", {}).get(detector)
    return lease.finder if lease is not None and _usable(lease.finder) else None


def thread_finder(detector: Detector) -> FaceFinder:
    """This thread's finder for ``detector``: on first use a spare one, else a new one; reused afterwards."""
    finder = _live(detector)
    if finder is None:  # first use here, or closed since (``close_finders``), or built before a fork
        finder = _spare(detector) or make_finder(detector)
        if not hasattr(_local, "finders"):
            _local.finders = {}
        _local.finders[detector] = _Lease(finder, detector)
    return finder


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

    def ready(self) -> bool:
        """Whether its thread holds a usable finder (none yet, or ``close_finders`` closed it: no)."""
        return self._pool.submit(lambda: _live(self.detector) is not None).result()


def thread_background_finder(detector: Detector) -> BackgroundFinder:
    """This thread's ``BackgroundFinder`` for ``detector``, built on first use and reused afterwards."""
    cache: dict[str, BackgroundFinder] | None = getattr(_local, "background", None)
    if cache is None:
        cache = _local.background = {}
    if detector not in cache:
        cache[detector] = BackgroundFinder(detector)
    return cache[detector]


# Blank frames a new finder searches while fd 2 is silenced. The delegate logs on the first frame, and
# LiteRT warns once per detector the first time its input tensor is not 64-byte aligned, which is chance
# per call: after one blank frame, `predict` printed that warning in about half of its runs, after eight
# in none of 6 (nor 10 `prepare` runs).
WARM_UP_FRAMES = 8


def warm_up(finder: FaceFinder | BackgroundFinder) -> None:
    """Search ``WARM_UP_FRAMES`` blank frames, so that MediaPipe's one-time lines come out now (silenced)."""
    blank = np.zeros((64, 64, 3), np.uint8)
    for _ in range(WARM_UP_FRAMES):
        finder.find(blank)


def quiet_thread_finder(detector: Detector) -> FaceFinder:
    """``thread_finder``, with MediaPipe's start-up lines kept off the terminal the first time."""
    if (finder := _live(detector)) is not None:
        return finder
    with native_stderr_silenced():
        finder = thread_finder(detector)
        warm_up(finder)
    return finder


def quiet_background_finder(detector: Detector) -> BackgroundFinder:
    """``thread_background_finder``, its finder built (quietly) before it is returned."""
    finder = thread_background_finder(detector)
    if not finder.ready():
        with native_stderr_silenced():
            warm_up(finder)
    return finder


_silencing = threading.RLock()  # re-entrant: a finder freed by the garbage collector inside it closes quietly too
_silenced = {"depth": 0, "saved": -1}  # how many threads are inside, and the real fd 2 while they are


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: MediaPipe's C++ chatter bypasses Python.

    fd 2 is the whole process's, so threads share one silence: the first one in points it at /dev/null,
    the last one out puts it back (two threads each saving and restoring would leave it silenced).
    """
    with _silencing:
        if _silenced["depth"] == 0:
            sys.stderr.flush()
            _silenced["saved"] = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _silenced["depth"] += 1
    try:
        yield
    finally:
        with _silencing:
            _silenced["depth"] -= 1
            if _silenced["depth"] == 0:
                os.dup2(_silenced["saved"], 2)
                os.close(_silenced["saved"])


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

    def build() -> None:
        try:
            if build_one is None:
                warm_up(thread_background_finder(detector))
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
