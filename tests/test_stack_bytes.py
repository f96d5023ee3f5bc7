"""The stacks `prepare` writes stay byte-identical across refactors (issue 13: layout and CLI changes).

A small deterministic input (synthetic mp4v clips of scikit-image's astronaut and a PNG still: real
encode, decode and MediaPipe detection) goes through ``run_prepare``; every stack's TIFF bytes, pixel
array and metadata are hashed and compared with ``tests/data/stack_hashes.json``, recorded once at the
commit before the reshape (343267a, see the file's ``note``). When a stack differs the failure says which,
whether pixels or only metadata changed, how far the face boxes moved and the largest pixel difference
(the reference keeps each stack's pixels, deflated, for that).

A change that is meant to move pixels (a new face detector) re-records the reference and reports the
difference this test printed before:

    .venv/bin/python -m tests.test_stack_bytes --record --note "commit ..., what changed and by how much"

The inputs are kept in tests/data/stack_inputs/ (another OpenCV encodes the same frames to other bytes).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np

from pipeline.prepare.run import run_prepare
from pipeline.prepare.settings import PrepareConfig, SplitSettings
from stacks import read_manifest, read_stack
from stacks.settings import StackSettings
from tests.fixtures.clips import astronaut_head, make_face_clip, make_faceless_clip

REFERENCE = Path(__file__).resolve().parent / "data" / "stack_hashes.json"
# The input clips as made at 343267a (OpenCV 4.11's mp4v encoder): kept in git, because another OpenCV
# encodes the same frames to other bytes, and this test is about what prepare makes of the same input.
INPUTS = REFERENCE.parent / "stack_inputs"
SIZE = (320, 240)  # frame size of the clips
# Small stacks keep the reference's pixels small (~2 KB a stack); interval 15 samples 6 frames a sequence.
SETTINGS = {"size": 24, "interval": 15, "on_no_face": "center"}


def make_inputs(source: Path) -> None:
    """Clips and a still in the folder layout: one and two sequences, a mirrored face, a faceless clip."""
    head = astronaut_head()
    make_face_clip(head, source / "happy" / "clip_a.mp4", seconds=3.2, size=SIZE, seed=1)
    make_face_clip(np.ascontiguousarray(head[:, ::-1]), source / "sad" / "clip_b.mp4", seconds=170 / 30,
                   size=SIZE, seed=2)  # 90 + 80 frames: a second, padded sequence
    make_faceless_clip(source / "neutral" / "wall.mp4", seconds=3.2, size=SIZE, seed=3)  # a centre crop
    cv2.imwrite(str(source / "happy" / "still.png"), cv2.cvtColor(head, cv2.COLOR_RGB2BGR))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(work: Path) -> dict:
    """Prepare the recorded inputs (a copy under ``work``) and describe every file that came out."""
    source, out = work / "src", work / "out"
    shutil.copytree(INPUTS, source)
    run_prepare(PrepareConfig(source=source, out=out, stack=StackSettings(**SETTINGS),
                              split=SplitSettings(val_fraction=0), workers=1, progress=False))
    inputs = {str(p.relative_to(source)): _sha(p.read_bytes()) for p in sorted(source.rglob("*")) if p.is_file()}
    stacks = {}
    for row in read_manifest(out):
        stack = read_stack(row.path)
        pixels = np.ascontiguousarray(stack.array)
        stacks[row.stack] = {
            "tiff": _sha(row.path.read_bytes()),  # the description holds no time or absolute path
            "pixels": _sha(f"{pixels.shape}{pixels.dtype}".encode() + pixels.tobytes()),
            "meta": _sha(json.dumps(stack.meta, sort_keys=True).encode()),
            "boxes": stack.meta["boxes"],
            "shape": list(pixels.shape),
            "deflated": base64.b64encode(zlib.compress(pixels.tobytes(), 9)).decode(),
        }
    return {"inputs": inputs, "manifest": _sha((out / "manifest.csv").read_bytes()), "stacks": stacks}


def _pixels(entry: dict) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(entry["deflated"])), np.uint8).reshape(entry["shape"])


def differences(expected: dict, got: dict) -> list[str]:
    """What differs, one line each, with box shifts and pixel differences: empty when identical."""
    lines = []
    if expected["inputs"] != got["inputs"]:
        changed = sorted(k for k in expected["inputs"].keys() | got["inputs"].keys()
                         if expected["inputs"].get(k) != got["inputs"].get(k))
        lines.append(f"the INPUTS differ from the recorded ones ({', '.join(changed)}): {INPUTS} was changed; "
                     "restore it from git")
    for name in sorted(expected["stacks"].keys() - got["stacks"].keys()):
        lines.append(f"{name}: missing (was in the reference)")
    for name in sorted(got["stacks"].keys() - expected["stacks"].keys()):
        lines.append(f"{name}: new (not in the reference)")
    for name in sorted(expected["stacks"].keys() & got["stacks"].keys()):
        old, new = expected["stacks"][name], got["stacks"][name]
        if old["tiff"] == new["tiff"]:
            continue
        parts = []
        if old["pixels"] != new["pixels"]:
            a, b = _pixels(old), _pixels(new)
            if a.shape != b.shape:
                parts.append(f"shape {a.shape} -> {b.shape}")
            else:
                diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
                parts.append(f"pixels differ: max {int(diff.max())}, mean {diff.mean():.3f} grey levels, "
                             f"{np.count_nonzero(diff) / diff.size:.1%} of pixels")
        if old["boxes"] != new["boxes"]:
            shift = max((abs(x - y) for p, q in zip(old["boxes"], new["boxes"]) for x, y in zip(p, q)), default=0)
            parts.append(f"boxes moved by up to {shift} px")
        if old["meta"] != new["meta"]:
            parts.append("metadata differs")
        lines.append(f"{name}: " + ("; ".join(parts) or "TIFF bytes differ, pixels and metadata equal"))
    if expected["manifest"] != got["manifest"]:
        lines.append("manifest.csv differs")
    return lines


def test_prepare_writes_the_stacks_it_wrote_before_the_reshape(tmp_path: Path) -> None:
    expected = json.loads(REFERENCE.read_text())
    got = fingerprint(tmp_path)
    lines = differences(expected, got)
    assert not lines, (f"{len(lines)} of {len(expected['stacks'])} stacks (or the inputs) differ from "
                       f"{REFERENCE.name}:\n  " + "\n  ".join(lines)
                       + "\nif meant, re-record: .venv/bin/python -m tests.test_stack_bytes --record --note ...")


def main(argv: list[str] | None = None) -> int:
    """``--record``: write the reference from this tree; without it, print the differences from it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"(re)write {REFERENCE}")
    parser.add_argument("--out", type=Path, default=REFERENCE, help="where --record writes")
    parser.add_argument("--note", default="", help="with --record: how and where the reference was made")
    parser.add_argument("--make-inputs", action="store_true", help=f"(re)make {INPUTS} with this OpenCV")
    args = parser.parse_args(argv)
    if args.make_inputs:
        shutil.rmtree(INPUTS, ignore_errors=True)
        make_inputs(INPUTS)
        print(f"wrote {INPUTS}")
        return 0
    if args.record and not args.note:
        parser.error("--record needs --note: the commit, and what changed the stacks")
    with tempfile.TemporaryDirectory() as work:
        got = fingerprint(Path(work))
    if args.record:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"note": args.note, **got}, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.out}: {len(got['stacks'])} stacks")
        return 0
    lines = differences(json.loads(REFERENCE.read_text()), got)
    print("\n".join(lines) or f"identical to {REFERENCE}")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
