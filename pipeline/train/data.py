"""Load a stack folder for training or evaluation, with every check done before a model is built."""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from stacks.dataset import DatasetError, StackDataset
from stacks.io import read_stack
from stacks.manifest import MANIFEST_NAME, ManifestRow, read_manifest
from stacks.settings import StackSettings


class DataError(Exception):
    """A stack folder that cannot be trained on; the message says what to do."""


@dataclass
class RunData:
    classes: list[str]
    channels: int
    stack: StackSettings  # how the stacks were made (goes into every checkpoint)
    rows: dict[str, list[ManifestRow]]  # split -> rows


def stacks_interval(folder: Path) -> int | None:
    """The interval the stacks in ``folder`` were made with (their prepare_report.json), None if unknown."""
    try:
        report = json.loads((Path(folder) / "prepare_report.json").read_text(encoding="utf-8"))
        interval = report["settings"]["interval"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return interval if isinstance(interval, int) else None


def read_run_data(folder: Path, classes: list[str] | None = None) -> RunData:
    """Read and check the manifest: present, not empty, one channel count, one fingerprint, and
    every class present in train. ``classes`` (evaluation of a trained model) replaces the last check:
    then no train split is needed, only labels the model knows."""
    folder = Path(folder)
    if not (folder / MANIFEST_NAME).is_file():
        raise DataError(f"no {MANIFEST_NAME} in {folder}: make the stacks first (`python cli.py prepare --source "
                        f"CLIPS_DIR --interval K --out {folder}`, K the interval to train on), or pass the stack "
                        "folder with --data")
    try:
        rows = read_manifest(folder)
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{folder / MANIFEST_NAME} is malformed ({type(exc).__name__}: {exc}): rerun "
                        "`python cli.py prepare` to rewrite it") from exc
    if not rows:
        raise DataError(f"{folder / MANIFEST_NAME} lists no stacks: prepare found no usable clip "
                        "(see prepare_report.json there)")
    by_split: dict[str, list[ManifestRow]] = {}
    for row in rows:
        by_split.setdefault(row.split, []).append(row)
    channels = Counter(row.channels for row in rows)
    if len(channels) > 1:
        raise DataError(f"{folder} mixes stacks of {sorted(channels)} channels: prepare every clip with the "
                        "same --interval (one stack folder per interval)")
    prints = Counter(row.fingerprint for row in rows)
    if len(prints) > 1:
        raise DataError(f"{folder} mixes stacks made with different settings ({len(prints)} fingerprints): "
                        "rerun `python cli.py prepare` on it")
    if classes is not None:
        unknown = sorted({row.label for row in rows} - set(classes))
        if unknown:
            # Every unknown label in the suggested map: a map of the close ones only still failed on the rest.
            close = {u: m[0] for u in unknown if (m := difflib.get_close_matches(u, classes, n=1, cutoff=0.6))}
            pairs = ",".join(f"{u}={close.get(u, 'CLASS')}" for u in unknown)
            hint = (f": the same emotions under other names? prepare the clips again with --label-map {pairs}"
                    + (" (CLASS: one of the model's classes, or drop)" if len(close) < len(unknown) else "")
                    if close else "")
            raise DataError(f"{folder} has labels {unknown} that the model was not trained on ({classes}){hint}")
        first = rows[0]
    else:
        classes, first = _training_classes(folder, rows, by_split), by_split["train"][0]
    try:
        stack = StackSettings.from_dict(read_stack(first.path).meta.get("settings", {}))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {first.path} ({exc}): rerun `python cli.py prepare`") from exc
    return RunData(classes=list(classes), channels=channels.most_common(1)[0][0], stack=stack, rows=by_split)


def _training_classes(folder: Path, rows: list[ManifestRow], by_split: dict[str, list[ManifestRow]]) -> list[str]:
    train = by_split.get("train", [])
    if not train:
        raise DataError(f"{folder} has no training stacks (splits present: {', '.join(sorted(by_split))})")
    classes = sorted({row.label for row in train})
    missing = sorted({row.label for row in rows} - set(classes))
    if missing:
        raise DataError(f"class{'es' if len(missing) > 1 else ''} {', '.join(missing)} "
                        "ha{} validation/test stacks but no training samples: add training clips or drop "
                        "the class".format("ve" if len(missing) > 1 else "s"))
    if len(classes) < 2:
        raise DataError(f"only one class ({classes[0]}) in the training split: a classifier needs at least two")
    return classes


def load_split(data: RunData, split: str, size: int, cache_dir: Path | None, progress: bool) -> StackDataset:
    rows = data.rows.get(split, [])
    if not rows:
        hint = {"val": " (prepare with --val-fraction > 0 or --val-ids; prepare's summary warns when they made "
                       "none: a fraction of too few clips per label, or ids that match no file)",
                "test": " (prepare with --test-fraction > 0, or pass --data a stack folder that has a test split)",
                }.get(split, "")
        raise DataError(f"no {split} stacks in the stack folder{hint}")
    try:
        return StackDataset(rows, data.classes, size, cache_dir=cache_dir, progress=progress, desc=f"load {split}")
    except DatasetError as exc:
        raise DataError(str(exc)) from exc
