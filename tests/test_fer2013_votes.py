"""benchmarks/fer2013_votes.py finds each FER+ face's FER2013 copy by its pixels, through resampling and a
change of level and contrast."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from benchmarks.fer2013_votes import nearest, pixels


def test_resampled_copies_are_matched_to_their_originals(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    originals = [cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (5, 5), 1.5) for _ in range(40)]
    order = rng.permutation(len(originals))
    for i, k in enumerate(order):  # FER2013's copy: enlarged, shrunk back, brighter and flatter, another name
        copy = cv2.resize(cv2.resize(originals[k], (144, 144), interpolation=cv2.INTER_CUBIC), (48, 48),
                          interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(tmp_path / f"copy_{i}.png"), np.clip(copy * 0.8 + 30, 0, 255).astype(np.uint8))
    for k, image in enumerate(originals):
        cv2.imwrite(str(tmp_path / f"original_{k}.png"), image)
    pool = np.stack([pixels(tmp_path / f"copy_{i}.png") for i in range(len(originals))])
    queries = np.stack([pixels(tmp_path / f"original_{k}.png") for k in range(len(originals))])
    best, score = nearest(queries, pool, chunk=7)
    assert [int(order[i]) for i in best] == list(range(len(originals)))
    assert score.min() > 0.95
