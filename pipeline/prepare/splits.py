"""Assign whole sources to train / val / test so no video's chunks land in two splits."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from pipeline.prepare.pair_file import read_pairs
from pipeline.prepare.settings import SplitSettings
from pipeline.prepare.sources import Source

# Split names a split file may use, mapped onto ours (FER2013 calls them Training/PublicTest/PrivateTest).
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "publictest": "val", "test": "test", "testing": "test", "privatetest": "test"}
_PATH_COLUMNS = ("path", "file", "rel")
_SPLIT_COLUMNS = ("split", "usage")


class SplitFileError(ValueError):
    """The split file cannot be used as given."""


def read_split_file(path: Path) -> dict[str, str]:
    """``{relative path: split}`` from a CSV with a path column and a split (or usage) column."""
    result: dict[str, str] = {}
    for line, rel, split in read_pairs(path, _PATH_COLUMNS, _SPLIT_COLUMNS, SplitFileError, "split file"):
        if split.lower() not in SPLIT_NAMES:
            raise SplitFileError(f"{path}:{line}: unknown split {split!r} "
                                 f"(use one of {', '.join(sorted(SPLIT_NAMES))})")
        result[rel] = SPLIT_NAMES[split.lower()]
    return result


def _counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of ``n`` sources of one label go to val and test; train always keeps one."""
    n_test = round(n * test_fraction)
    n_val = round(n * val_fraction)
    # Small classes: a fraction > 0 still gets one source, as long as train keeps one.
    if test_fraction > 0 and n_test == 0 and n - n_val >= 2:
        n_test = 1
    if val_fraction > 0 and n_val == 0 and n - n_test >= 2:
        n_val = 1
    while n_val + n_test >= n and (n_val or n_test):
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def assign_splits(sources: list[Source], settings: SplitSettings) -> dict[str, str]:
    """Map each source's ``rel`` to its split.

    Order of precedence: the split file (files it lists); a train/val/test folder in the dataset;
    then ``val_ids`` (matched against the video id, e.g. ``0016``, or the file stem, e.g.
    ``Happy_0016``); then a per-label shuffle with ``seed`` (stratified). Sorting first makes the
    result independent of file-system order.
    """
    listed = read_split_file(settings.split_file) if settings.split_file else {}
    result: dict[str, str] = {s.rel: listed[s.rel] for s in sources if s.rel in listed}
    sources = [s for s in sources if s.rel not in result]
    val_ids = {v.strip() for v in settings.val_ids if v.strip()}
    free: dict[str, list[Source]] = defaultdict(list)
    carve_val = not val_ids and settings.val_fraction > 0 and not any(s.split == "val" for s in sources)
    for src in sorted(sources, key=lambda s: s.rel):
        if src.split is not None:
            # Datasets with only train/ and test/ folders still need a validation set: it is
            # carved out of train/ below, never out of test/.
            if src.split == "train" and carve_val:
                free[src.label].append(src)
            else:
                result[src.rel] = src.split
        elif val_ids:
            result[src.rel] = "val" if (src.video_id in val_ids or src.path.stem in val_ids) else "train"
        else:
            free[src.label].append(src)
    if settings.by == "actor":
        result.update(_split_by_actor([s for group in free.values() for s in group], settings))
        return result
    for label in sorted(free):
        group = free[label]
        rng = random.Random(f"{settings.seed}:{label}")
        order = list(range(len(group)))
        rng.shuffle(order)
        from_folders = all(s.split == "train" for s in group)
        test_fraction = 0.0 if from_folders else settings.test_fraction
        n_val, n_test = _counts(len(group), settings.val_fraction, test_fraction)
        for rank, idx in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            result[group[idx].rel] = split
    return result



def _split_by_actor(sources: list[Source], settings: SplitSettings) -> dict[str, str]:
    """Whole people to val and test, so that no face is seen in training and judged in validation."""
    missing = sorted({s.rel for s in sources if s.group is None})
    if missing:
        raise SplitFileError(f"--split-by actor needs file names that say who is in them (RAVDESS, CREMA-D); "
                             f"{len(missing)} do not, e.g. {missing[0]}")
    actors = sorted({s.group for s in sources if s.group is not None})
    rng = random.Random(f"{settings.seed}:actors")
    rng.shuffle(actors)
    n_val, n_test = _counts(len(actors), settings.val_fraction, settings.test_fraction)
    split_of = {a: "test" if i < n_test else "val" if i < n_test + n_val else "train" for i, a in enumerate(actors)}
    return {s.rel: split_of[s.group] for s in sources if s.group is not None}
