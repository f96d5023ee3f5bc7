"""Soft targets: each stack's annotator vote distribution over the model's classes (``train --targets soft``).

The FER+ paper's cross-entropy scheme: a face that 6 of 10 people call neutral and 4 call sad is
trained towards (0.6 neutral, 0.4 sad) instead of a hard "neutral", so the network learns how
ambiguous a face is, not one annotator's (or the majority's) guess. The votes come from the
manifest's ``votes`` column (``prepare`` fills it for the FER+ layout; any manifest of clip stacks
that carries it works the same way).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stacks.manifest import ManifestRow, parse_votes


class SoftTargetError(ValueError):
    """Stacks that cannot be trained with soft targets; the message says what to do."""


def vote_distributions(rows: Sequence[ManifestRow], classes: Sequence[str]) -> np.ndarray:
    """(N, K) float32: row i is the share of row i's votes that went to each class, in ``classes`` order.

    Votes for a class the model does not have are left out before normalising; a row whose votes
    all went to such classes falls back to its own label (one-hot).
    """
    index = {c: i for i, c in enumerate(classes)}
    missing = [row.stack for row in rows if not row.votes]
    if missing:
        raise SoftTargetError(f"--targets soft needs the annotators' votes in the manifest, and {len(missing)} of "
                              f"{len(rows)} stacks have none (e.g. {missing[0]}): prepare a dataset that has votes "
                              "(the FER+ layout), or train with --targets majority")
    out = np.zeros((len(rows), len(classes)), dtype=np.float32)
    for i, row in enumerate(rows):
        try:
            votes = parse_votes(row.votes)
        except ValueError as exc:
            raise SoftTargetError(f"{row.stack}: votes cell {row.votes!r} is malformed ({exc}); rerun prepare") from exc
        for cls, count in votes.items():
            if cls in index:
                out[i, index[cls]] += count
        total = out[i].sum()
        if total > 0:
            out[i] /= total
        else:
            out[i, index[row.label]] = 1.0
    return out
