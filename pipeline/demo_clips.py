"""A labelled clip folder in the seed's naming (``Happy_0001.mp4``) for the demo and benchmarks."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import IMAGE_EXTENSIONS
from pipeline.synthetic import astronaut_head, load_photo, make_corrupt_file, make_face_clip, make_faceless_clip


def _photos_by_label(folder: Path, per_label: int) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder {folder} does not exist")
    found = {}
    for label_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(p for p in label_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:per_label]
        if photos:
            found[label_dir.name] = photos
    if not found:
        raise ValueError(f"no <label>/ folders with photos in {folder}")
    return found


def make_clip_set(out: Path, photos: Path | None = None, per_label: int = 3, seconds: float = 4.0,
                  fps: float = 30.0, size: tuple[int, int] = (640, 480), with_bad_files: bool = False,
                  ) -> list[Path]:
    """Write ``per_label`` clips per label; returns their paths.

    Without ``photos`` every clip shows scikit-image's astronaut (smiling, hence ``Happy``).
    """
    out = Path(out)
    paths: list[Path] = []
    if photos is None:
        head = astronaut_head()
        sources = {"happy": [head] * per_label}
    else:
        sources = {label: [load_photo(p) for p in ps] for label, ps in _photos_by_label(photos, per_label).items()}
    seed = 0
    for label, images in sources.items():
        for i, image in enumerate(images, start=1):
            path = out / f"{label.capitalize()}_{i:04d}.mp4"
            make_face_clip(image, path, seconds=seconds, fps=fps, size=size, seed=seed)
            paths.append(path)
            seed += 1
    if with_bad_files:
        label = next(iter(sources)).capitalize()
        paths.append(make_faceless_clip(out / f"{label}_0901.mp4", seconds=seconds, fps=fps, size=size))
        short_face = next(iter(sources.values()))[0]
        paths.append(make_face_clip(short_face, out / f"{label}_0902.mp4", seconds=1.0, fps=fps, size=size).path)
        paths.append(make_corrupt_file(out / f"{label}_0903.mp4"))
    return paths
