"""The framing a model was really trained on, so that `predict` crops faces the same way.

``--margin`` is the margin asked for around the face; where the frame edge cuts the box short, a crop has
less. In video that is rare. In a dataset of pre-cropped faces (FER2013: 48x48 images that the face
fills) it is the rule: with ``--margin 0.1`` 83% of FER2013's crops are the whole image, a median margin
of 0.05. A model trained on those and served with margin 0.1 sees faces smaller than it ever learnt
from; on the face clips of benchmarks/clip_accuracy.py that cost 10 points of accuracy. So training
records the median margin of its training crops, and serving crops with it.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from pathlib import Path

from stacks.manifest import ManifestRow

log = logging.getLogger(__name__)


def median_margin(margins: Sequence[float | None]) -> float | None:
    """Median over the channels where the face was detected; None when it never was."""
    known = [m for m in margins if m is not None]
    return round(statistics.median(known), 4) if known else None


def training_margin(rows: Sequence[ManifestRow]) -> float | None:
    """Median crop margin over the stacks a model is trained on; None for manifests that do not say."""
    return median_margin([row.margin for row in rows])


def checkpoint_framing(data: dict) -> dict:
    """A checkpoint's framing; for one saved before training recorded it, measured now from the manifest
    of the stack folder it was trained on, when that is still here (else empty: serve at ``--margin``).

    A manifest that is there but cannot be read is said out loud: serving at ``--margin`` instead of the
    real training margin costs accuracy without any other sign."""
    if data.get("framing"):
        return data["framing"]
    from stacks.manifest import MANIFEST_NAME, read_manifest
    from stacks.settings import StackSettings

    folder = (data.get("train") or {}).get("data")
    if not folder or not (Path(folder) / MANIFEST_NAME).is_file():
        return {}
    try:
        fingerprint = StackSettings.from_dict(data["stack"]).fingerprint()
        # Only stacks made with the checkpoint's own settings: the folder may have been prepared again since.
        rows = [r for r in read_manifest(folder, split="train") if r.fingerprint == fingerprint]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("this model records no crop margin and its training manifest %s cannot be read (%s): "
                    "faces are cropped at --margin instead; export the model again from a checkpoint that "
                    "has it, or repair the manifest", Path(folder) / MANIFEST_NAME, exc)
        return {}
    margin = training_margin(rows)
    return {"margin": margin} if margin is not None else {}


def serving_margin(asked: float, framing: dict) -> float:
    """The margin `predict` crops with: the training crops' real one where known."""
    margin = framing.get("margin")
    return asked if margin is None else min(max(float(margin), 0.0), 1.0)
