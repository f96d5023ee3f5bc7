from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stacks import ManifestRow, read_manifest, read_stack, write_manifest, write_stack
from stacks.atomic import TMP_MARK, atomic_write
from stacks.faces import Box, DetectionFinder, MeshFinder, crop_grey, find_faces, make_finder, square_box, thread_finder
from stacks.framing import median_margin, serving_margin
from stacks.maker import stack_detected
from stacks.settings import StackSettings
from stacks.tracks import choose_face
from tests.fixtures.clips import ASTRONAUT_LANDMARKS


def test_square_box_adds_margin_and_stays_in_frame() -> None:
    box = square_box(Box(100, 50, 200, 190), margin=0.1, frame_w=640, frame_h=480)
    assert box.width == box.height == 168  # 140 * 1.2
    assert box.center == pytest.approx((150, 120), abs=1)
    edge = square_box(Box(0, 400, 60, 480), margin=0.1, frame_w=640, frame_h=480)
    assert edge.x0 == 0 and edge.y1 == 480 and edge.width == edge.height
    huge = square_box(Box(-50, -50, 700, 700), margin=0.1, frame_w=640, frame_h=480)
    assert (huge.width, huge.height) == (480, 480) and 0 <= huge.x0 and huge.x1 <= 640


def test_crop_grey_is_square_uint8() -> None:
    grey = np.arange(480 * 640, dtype=np.uint32).reshape(480, 640).astype(np.uint8)
    crop = crop_grey(grey, Box(10, 20, 110, 120), 32)
    assert crop.shape == (32, 32) and crop.dtype == np.uint8


@pytest.mark.parametrize("finder_cls", [DetectionFinder, MeshFinder])
def test_finders_put_the_box_on_the_astronauts_face(finder_cls: type, head: np.ndarray) -> None:
    faces = finder_cls().find(head)
    assert len(faces) == 1
    box = square_box(faces[0], 0.1, head.shape[1], head.shape[0])
    for x, y in ASTRONAUT_LANDMARKS.values():
        assert box.x0 < x < box.x1 and box.y0 < y < box.y1
    assert 90 < box.width < 160  # the face is ~95 px wide: a face crop, not the whole photo


# The boxes of ``mp.solutions.face_detection`` (MediaPipe 0.10.21, the graph every stack so far was cropped
# with, and ``MESH_FRAMING`` calibrated on), recorded once on the images below: MediaPipe 1.x has no
# Solutions API. Our Tasks detector gives whole pixels of the shrunk frame, so its box centres may move by
# about one pixel of that frame, 640 / 256 = 2.5 px on a 640x480 one; measured on these images: see the file.
SOLUTIONS_BOXES = Path(__file__).parent / "data" / "solutions_boxes.json"
SOLUTIONS_TOLERANCE_PX = 2.5


def equivalence_images(head: np.ndarray) -> dict[str, np.ndarray]:
    """The astronaut (a face that ships with scikit-image) at the sizes prepare meets, from a 48 px FER2013
    face to 640x480 frames that the finder shrinks first, turned, mirrored, darkened, at a frame's edges."""
    import cv2
    from skimage import data

    turned = cv2.warpAffine(head, cv2.getRotationMatrix2D((160, 150), 15, 1.0), (320, 300),
                            borderMode=cv2.BORDER_REFLECT)
    images = {"head": head, "mirrored": np.ascontiguousarray(head[:, ::-1]), "turned": turned,
              "dark": (head * 0.5).astype(np.uint8), "astronaut": data.astronaut(),
              "small": cv2.resize(head, (120, 112)), "fer_size": cv2.resize(head, (48, 48)),
              "blank": np.full((240, 320, 3), 128, np.uint8)}
    ramp = np.linspace(60, 200, 640, dtype=np.float32)
    wall = np.repeat(np.repeat(ramp[None, :, None], 480, axis=0), 3, axis=2).astype(np.uint8)
    for name, (x, y, side) in {"frame_centre": (240, 120, 220), "frame_left": (10, 200, 160),
                               "frame_top": (400, 0, 180), "frame_far": (300, 300, 90)}.items():
        frame = wall.copy()
        frame[y:y + side, x:x + side] = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
        images[name] = frame
    return images


def _solutions_boxes(image: np.ndarray, solution: object, detect_side: int, framing: tuple[float, ...],
                     min_confidence: float) -> list[list[float]]:
    """[score, centre x, centre y] of each face ``mp.solutions.face_detection`` finds, in ``image`` pixels,
    shifted by the finder's framing; the image is shrunk as the finder shrinks it."""
    import cv2

    h, w = image.shape[:2]
    scale = detect_side / max(h, w)
    small = image
    if scale < 1.0:
        small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    dx, dy = framing[:2]
    found = []
    for det in solution.process(small).detections or []:  # type: ignore[attr-defined]
        if det.score[0] >= min_confidence:
            rb = det.location_data.relative_bounding_box
            found.append([det.score[0], (rb.xmin + rb.width * (0.5 + dx)) * w, (rb.ymin + rb.height * (0.5 + dy)) * h])
    return found


def record_solutions_boxes(note: str) -> None:
    """Run under mediapipe 0.10.21 (the last with ``mp.solutions``): writes ``SOLUTIONS_BOXES``."""
    import json

    import mediapipe as mp

    from tests.fixtures.clips import astronaut_head

    images = equivalence_images(astronaut_head())
    framing, side = (0.0, -0.047, 0.94, 1.07), 256  # DetectionFinder's MESH_FRAMING and DETECT_SIDE
    with mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.6) as solution:
        boxes = {name: _solutions_boxes(image, solution, side, framing, 0.6) for name, image in images.items()}
    SOLUTIONS_BOXES.write_text(json.dumps({"note": note, "mediapipe": mp.__version__, "boxes": boxes}, indent=1) + "\n")


def test_detection_finder_gives_the_solutions_api_boxes(head: np.ndarray) -> None:
    """Always runs. ``make_finder("detection")`` (through ``find_faces``, on BGR frames as prepare hands them
    over) finds the faces the Solutions API found, with its scores, and box centres within the tolerance."""
    import json

    import cv2

    recorded = json.loads(SOLUTIONS_BOXES.read_text())["boxes"]
    finder = make_finder("detection")
    worst = 0.0
    for name, image in equivalence_images(head).items():
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ours, theirs = find_faces(finder, bgr), recorded[name]
        assert len(ours) == len(theirs), f"{name} {image.shape}: {len(ours)} faces, Solutions API {len(theirs)}"
        h, w = image.shape[:2]
        for box, (score, cx, cy) in zip(ours, theirs):
            assert box.score == pytest.approx(score, abs=1e-4), name
            if 0 < box.x0 and box.x1 < w and 0 < box.y0 and box.y1 < h:  # not clamped at an edge
                worst = max(worst, abs(box.center[0] - cx), abs(box.center[1] - cy))
        assert find_faces(thread_finder("detection"), bgr) == ours  # the per-thread finder prepare uses
        # find_faces shrinks the BGR frame before it turns it to RGB: the very boxes of the RGB frame
        assert finder.find(image) == ours
    assert worst <= SOLUTIONS_TOLERANCE_PX, f"box centres differ from the Solutions API's by up to {worst:.3f} px"
    print(f"largest box-centre difference from the Solutions API: {worst:.3f} px")


def test_mesh_tracking_follows_the_face_loses_it_and_finds_it_again(head: np.ndarray) -> None:
    """The seed's video mode: the second frame's box comes from the first frame's landmarks (close to a fresh
    search), a blank frame loses the face, and the next face is detected afresh."""
    tracker, fresh = MeshFinder(track=True), MeshFinder()
    first = tracker.find(head)
    assert first == fresh.find(head) and len(first) == 1
    tracked = tracker.find(head)
    assert len(tracked) == 1 and tracked[0].iou(first[0]) > 0.97
    assert tracker.find(np.full_like(head, 128)) == []
    assert tracker.find(head) == first


def test_mesh_landmarks_are_the_points_the_box_is_drawn_round(head: np.ndarray) -> None:
    """``landmarks`` gives the points ``find`` boxes: eyes level with the face, the right eye left of the left."""
    finder = MeshFinder()
    (points,) = finder.landmarks(head)
    (box,) = finder.find(head)
    assert points.shape == (468, 2)
    assert np.allclose(points.min(axis=0), (box.x0, box.y0)) and np.allclose(points.max(axis=0), (box.x1, box.y1))
    right, left = points[MeshFinder.EYES[0]], points[MeshFinder.EYES[1]]
    assert right[0] < left[0] and abs(right[1] - left[1]) < 0.2 * (left[0] - right[0])
    assert finder.landmarks(np.full_like(head, 128)) == []


def test_finders_find_nothing_in_a_blank_frame() -> None:
    blank = np.full((240, 320, 3), 128, np.uint8)
    assert DetectionFinder().find(blank) == [] and MeshFinder().find(blank) == []


def test_choose_face_prefers_the_steady_confident_face_over_a_big_flicker() -> None:
    face = Box(100, 100, 180, 180, 0.9)
    wall = Box(400, 50, 600, 250, 0.55)  # bigger, but low confidence and only in some frames
    detections = [[face, wall], [face], [face, wall], [], [face]]
    chosen, found = choose_face(detections)
    assert all(box == face for box in chosen)
    assert found == [True, True, True, False, True]


def test_choose_face_late_face_and_no_face() -> None:
    face = Box(10, 10, 50, 50, 0.9)
    chosen, found = choose_face([[], [], [face]])
    assert chosen == [face, face, face] and found == [False, False, True]
    assert choose_face([[], []]) == ([None, None], [False, False])


def test_choose_face_follows_a_moving_face() -> None:
    path = [Box(100 + 10 * i, 100, 180 + 10 * i, 180, 0.9) for i in range(6)]
    other = Box(500, 300, 560, 360, 0.9)
    chosen, _ = choose_face([[box, other] for box in path])
    assert chosen == path


def test_stack_roundtrip_with_metadata_and_mmap(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (18, 32, 32), dtype=np.uint8)
    meta = {"source": "Happy_0001.mp4", "boxes": [[1, 2, 3, 4]], "settings": {"interval": 5}}
    write_stack(tmp_path / "a.tiff", array, meta)
    stack = read_stack(tmp_path / "a.tiff")
    assert np.array_equal(stack.array, array) and stack.meta == meta and stack.channels == 18
    assert np.array_equal(np.asarray(read_stack(tmp_path / "a.tiff", mmap=True).array), array)
    single = array[:1]
    write_stack(tmp_path / "b.tiff", single, {})
    assert read_stack(tmp_path / "b.tiff").array.shape == (1, 32, 32)
    with pytest.raises(ValueError, match="uint8"):
        write_stack(tmp_path / "c.tiff", array.astype(np.float32), {})


def test_atomic_write_errors_name_the_path_asked_for(tmp_path: Path) -> None:
    from models.checkpoint import save_checkpoint

    blocker = tmp_path / "photo.jpg"
    blocker.write_bytes(b"a file, not a folder")
    with pytest.raises(NotADirectoryError, match="a file stands where a folder") as caught:  # was "File exists"
        atomic_write(blocker / "out" / "p.csv", lambda tmp: tmp.write_text("x"))
    assert caught.value.filename == str(blocker)
    # /proc takes no new files, even from root: the error names x.pt, not its temporary file, and is an
    # OSError (torch.save given the path raised RuntimeError "open file failed", a traceback in `export`).
    with pytest.raises(OSError) as caught:
        save_checkpoint(Path("/proc/x.pt"), {"kind": "frame"})
    assert caught.value.filename == "/proc/x.pt"


def test_atomic_write_leaves_nothing_when_the_writer_dies(tmp_path: Path) -> None:
    target = tmp_path / "x.tiff"

    def dies_halfway(tmp: Path) -> None:
        tmp.write_bytes(b"half a stack")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies_halfway)
    assert list(tmp_path.iterdir()) == []
    write_stack(target, np.zeros((2, 8, 8), np.uint8), {"v": 1})
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies_halfway)
    assert read_stack(target).meta == {"v": 1}  # the old complete file survives
    assert not any(TMP_MARK in p.name for p in tmp_path.iterdir())


def test_atomic_write_over_a_folder_names_the_folder_not_a_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "out.csv").mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        atomic_write(tmp_path / "out.csv", lambda tmp: tmp.write_text("a,b\n"))
    assert caught.value.filename == str(tmp_path / "out.csv") and TMP_MARK not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_manifest_roundtrip_and_filters(tmp_path: Path) -> None:
    rows = [ManifestRow(f"{split}/{label}/v_000.tiff", label, split, f"{label}.mp4", "v", 0, 18, 90, 1.0, "fp")
            for split in ("train", "val") for label in ("happy", "sad")]
    assert write_manifest(tmp_path, rows) is True
    assert write_manifest(tmp_path, rows) is False  # unchanged: not rewritten
    back = read_manifest(tmp_path)
    assert len(back) == 4 and back[0].path == tmp_path / back[0].stack
    assert [r.label for r in read_manifest(tmp_path, split="val", label="sad")] == ["sad"]
    with pytest.raises(FileNotFoundError, match="cli.py prepare"):
        read_manifest(tmp_path / "missing")


def test_crops_record_the_margin_they_really_have() -> None:
    """A face that fills the image (a FER2013 picture) gets a crop cut short by the image edge: the
    recorded margin is the real, smaller one; a face with room around it gets exactly ``--margin``."""
    settings = StackSettings(size=32, margin=0.1)
    image = np.zeros((100, 100, 3), np.uint8)
    roomy = stack_detected([(0, image)], [[Box(30, 30, 70, 70)]], settings, channels=1)
    assert roomy.margins == [0.1] and roomy.boxes == [[26, 26, 74, 74]]
    filling = stack_detected([(0, image)], [[Box(5, 5, 95, 95)]], settings, channels=3)
    assert filling.boxes[0] == [0, 0, 100, 100]
    assert filling.margins == [round(5 / 90, 4), None, None]  # (100 / 90 - 1) / 2; padding has none
    assert median_margin([0.1, None, 0.02, 0.04]) == 0.04 and median_margin([None]) is None


def test_manifest_keeps_the_margin_and_reads_old_manifests(tmp_path: Path) -> None:
    row = ManifestRow("train/a/v_000.tiff", "a", "train", "a.mp4", "v", 0, 1, 1, 1.0, "fp", margin=0.0456)
    write_manifest(tmp_path, [row])
    assert read_manifest(tmp_path)[0].margin == 0.0456
    old = (tmp_path / "manifest.csv").read_text().replace(",margin", "").replace(",0.0456", "")
    (tmp_path / "manifest.csv").write_text(old)
    assert read_manifest(tmp_path)[0].margin is None
    assert serving_margin(0.1, {"margin": 0.0456}) == 0.0456 and serving_margin(0.1, {}) == 0.1


if __name__ == "__main__":
    import sys

    record_solutions_boxes(" ".join(sys.argv[1:]) or "recorded with mediapipe 0.10.21's Solutions API")
