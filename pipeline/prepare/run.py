"""`cli.py prepare`: a folder of clips (or images) -> face stacks, manifest, report.

Clips run in a thread pool: decoding (FFmpeg) and MediaPipe both release the GIL. Each worker
thread has a companion thread with its own MediaPipe graph, reused for every clip it handles, that
searches each sampled frame while the worker decodes the next ones (``faces.BackgroundFinder``).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from pipeline.prepare.ferplus import FerPlusError
from pipeline.prepare.labelling import CORRECTIONS_NAME, LabelFileError, Relabeller, read_corrections
from pipeline.prepare.settings import PrepareConfig
from pipeline.prepare.sources import Rejected, Source, discover, normalise_label
from pipeline.prepare.splits import SplitFileError, assign_splits
from pipeline.prepare.state import Journal, SourceRecord
from stacks.atomic import atomic_write_text, remove_partials
from stacks.faces import native_stderr_silenced, start_warm_up, thread_background_finder
from stacks.framing import median_margin
from stacks.io import write_stack
from stacks.maker import SourceSkipped, image_stacks, video_stacks
from stacks.manifest import ManifestRow, write_manifest
from stacks.settings import StackSettings
from stacks.video import VideoError, decode_threads, hopeless_seconds, probe_length, serial_opencv

REPORT_NAME = "prepare_report.json"


class PrepareError(Exception):
    """A problem the user must fix before anything can be produced (one line, non-zero exit)."""


class PrepareInterrupted(Exception):
    """Ctrl-C: finished stacks and the manifest were saved; rerunning continues."""


@dataclass
class PrepareResult:
    out: Path
    rows: list[ManifestRow]
    report: dict


def _stack_stems(sources: list[Source], splits: dict[str, str]) -> dict[str, str]:
    """File stem per source; two sources with the same id in one folder keep their extension."""
    keys = Counter((splits[s.rel], s.label, s.video_id) for s in sources)
    return {
        s.rel: s.video_id if keys[(splits[s.rel], s.label, s.video_id)] == 1 else f"{s.video_id}.{s.path.suffix[1:]}"
        for s in sources
    }


def process_source(src: Source, split: str, stem: str, settings: StackSettings, out: Path,
                   threads: int | None = None) -> SourceRecord:
    """Make and write every stack of one source; never raises for a bad file, records why instead.

    ``threads``: FFmpeg decoding threads for a clip (``video.decode_threads``).
    """
    stat = src.path.stat()
    record = SourceRecord(src.rel, stat.st_size, stat.st_mtime_ns, settings.fingerprint(), split, src.label)
    finder = thread_background_finder(settings.detector)
    try:
        if src.kind == "video":
            made = video_stacks(src.path, settings, finder, threads)
        else:
            made = image_stacks(src.path, settings, finder)
    except SourceSkipped as exc:
        record.skipped.append({"chunk": None, "reason": exc.reason, "detail": exc.detail})
        return record
    except Exception as exc:  # a clip that breaks a library must not stop a long run
        record.skipped.append({"chunk": None, "reason": "error", "detail": f"{type(exc).__name__}: {exc}"})
        return record
    record.frames_decoded = made.frames_decoded
    for chunk, reason, detail in made.dropped:
        record.skipped.append({"chunk": chunk, "reason": reason, "detail": detail})
    for stack in made.stacks:
        rel_path = f"{split}/{src.label}/{stem}_{stack.chunk:03d}.tiff"
        meta = {
            "source": src.rel, "video_id": src.video_id, "label": src.label, "split": split,
            "kind": src.kind, "chunk": stack.chunk, "frame_indices": stack.frame_indices,
            "timestamps": stack.timestamps,
            "frames": stack.frames, "padded": stack.padded, "fps": made.fps,
            "frame_size": list(made.frame_size), "boxes": stack.boxes, "found": stack.found, "margins": stack.margins,
            "face_ratio": stack.face_ratio, "settings": settings.to_dict(),
            "fingerprint": record.fingerprint,
        }
        write_stack(out / rel_path, stack.array, meta)
        record.rows.append(ManifestRow(
            stack=rel_path, label=src.label, split=split, source=src.rel, video_id=src.video_id,
            chunk=stack.chunk, channels=stack.array.shape[0], frames=stack.frames,
            face_ratio=round(stack.face_ratio, 4), fingerprint=record.fingerprint, margin=median_margin(stack.margins),
            root=str(out),
        ))
    return record


def _probe(src: Source, settings: StackSettings) -> SourceRecord | None:
    """A record of why ``src`` cannot give a stack, found without decoding; None if it may."""
    if src.kind != "video":
        return None
    try:
        frames, seconds, fps = probe_length(src.path)
    except VideoError as exc:
        reason, detail = "unreadable", str(exc)
    else:
        if not hopeless_seconds(seconds, fps, settings.min_seconds):
            return None  # long enough, or the container does not say: decoding will tell
        reason, detail = "too short", f"{frames} frames < --min-length {settings.min_length}"
    stat = src.path.stat()
    record = SourceRecord(src.rel, stat.st_size, stat.st_mtime_ns, settings.fingerprint(), "", src.label)
    record.skipped.append({"chunk": None, "reason": reason, "detail": detail})
    return record


def _drop_stale(old: SourceRecord | None, new: SourceRecord) -> None:
    """Delete stacks an earlier run made for this source that the new run did not rewrite."""
    if old is None:
        return
    keep = {row.stack for row in new.rows}
    for row in old.rows:
        if row.stack not in keep:
            row.path.unlink(missing_ok=True)


def _check_source(source: Path) -> None:
    if not source.exists():
        raise PrepareError(f"source folder {source} does not exist: pass --source DIR holding "
                           "<Label>_<id>.mp4 clips or <label>/ subfolders")
    if not source.is_dir():
        raise PrepareError(f"--source {source} is a file; pass the folder that holds the clips")


def _process_all(pool: ThreadPoolExecutor, todo: list[Source], splits: dict[str, str], stems: dict[str, str],
                 config: PrepareConfig, journal: Journal) -> tuple[int, bool]:
    """Run ``todo`` through the pool, journaling each source as it finishes.

    Returns (frames decoded, interrupted). Only a few clips per worker are queued at a time, so a
    Ctrl-C waits for the clips in flight and nothing more.
    """
    workers = max(1, config.workers)
    threads = decode_threads(workers)
    frames, interrupted = 0, False
    pending: set[Future] = set()
    queue = iter(todo)
    # the interval means nothing to still images (a face-image set showed "prepare interval 5")
    videos = any(src.kind == "video" for src in todo)
    bar = tqdm(total=len(todo), desc=f"prepare interval {config.stack.interval}" if videos else "prepare images",
               unit="file",
               disable=not config.progress or not todo, dynamic_ncols=True)

    def refill() -> None:
        while len(pending) < 2 * workers and (src := next(queue, None)) is not None:
            pending.add(pool.submit(process_source, src, splits[src.rel], stems[src.rel], config.stack, config.out,
                                     threads))

    def collect(future: Future) -> int:
        record = future.result()
        _drop_stale(journal.records.get(record.rel), record)
        journal.add(record)
        bar.update(1)
        return record.frames_decoded

    try:
        refill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                pending.discard(future)
                frames += collect(future)
            refill()
    except KeyboardInterrupt:
        interrupted = True
        # Clips not started are dropped; clips in flight finish (seconds at most) and are kept.
        running = [f for f in pending if not f.cancel()]
        for future in running:
            frames += collect(future)
    finally:
        bar.close()
    return frames, interrupted


def _relabeller(config: PrepareConfig, source: Path) -> Relabeller:
    """The corrections file (given, or the source folder's own) and the label map."""
    path = config.corrections or (source / CORRECTIONS_NAME if (source / CORRECTIONS_NAME).is_file() else None)
    if config.corrections is not None and not Path(config.corrections).is_file():
        raise PrepareError(f"--corrections {config.corrections} does not exist")
    try:
        corrections = read_corrections(path) if path else {}
    except LabelFileError as exc:
        raise PrepareError(str(exc)) from exc
    return Relabeller(corrections, dict(config.label_map), source_file=str(path) if path else None)


def find_sources(config: PrepareConfig) -> tuple[list[Source], list[Rejected], Relabeller]:
    """The files ``config`` would prepare, and those it sets aside, with their labels as prepare gives them
    (corrections and --label-map applied); also what `grid` checks before anything runs."""
    source = Path(config.source)
    _check_source(source)
    relabeller = _relabeller(config, source)
    try:
        sources, rejected = discover(source, config.labels, config.layout, relabeller)
    except FerPlusError as exc:
        raise PrepareError(str(exc)) from exc
    if not sources and not rejected:
        raise PrepareError(f"source folder {source} holds no videos or images "
                           f"(looked for .mp4 .mov .avi .mkv .webm .png .jpg)")
    return sources, rejected, relabeller


def run_prepare(config: PrepareConfig) -> PrepareResult:
    out, settings = Path(config.out), config.stack
    started, t0 = datetime.now(UTC), time.perf_counter()
    sources, rejected, relabeller = find_sources(config)
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out)
    journal = Journal(out).load()
    workers = max(1, config.workers)
    # A fresh pool: start_warm_up needs each of its tasks to start a thread of its own.
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prepare")
    try:
        with ThreadPoolExecutor(max_workers=workers) as probe_pool:
            # The workers' MediaPipe graphs are built while the clips are probed, not after.
            with native_stderr_silenced():
                warming = start_warm_up(settings.detector, workers, pool.submit)
                probing = probe_pool.map(lambda s: _probe(s, settings), sources)
                for future in warming:
                    future.result()
            probed = list(probing)
        # Files that cannot give a stack are set aside before splitting: they take no val/test slot.
        unusable = [record for record in probed if record is not None]
        usable = [s for s, record in zip(sources, probed) if record is None]
        try:
            splits = assign_splits(usable, config.split)
        except SplitFileError as exc:
            raise PrepareError(str(exc)) from exc
        stems = _stack_stems(usable, splits)
        todo = [s for s in usable
                if config.force or s.rel not in journal.records
                or not journal.records[s.rel].is_current(s.path, settings.fingerprint(), splits[s.rel], s.label)]
        with serial_opencv():
            frames, interrupted = _process_all(pool, todo, splits, stems, config, journal)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    journal.compact()
    records = [journal.records[s.rel] for s in usable if s.rel in journal.records]
    # Votes come from the label file of this run (the journal keeps stacks, not labels' vote counts).
    votes = {s.rel: s.votes for s in usable}
    rows = [replace(row, votes=votes.get(row.source, "")) for record in records for row in record.rows]
    write_manifest(out, rows)
    reused = None if interrupted else len(records) - len(todo)
    report = _report(config, started, time.perf_counter() - t0, len(sources) + len(rejected), rejected,
                     records + unusable, len(todo), reused, frames, interrupted)
    report["labels"] = relabeller.report()
    atomic_write_text(out / REPORT_NAME, json.dumps(report, indent=2, sort_keys=True) + "\n")
    if interrupted:
        raise PrepareInterrupted(
            f"interrupted: {len(records)} of {len(usable)} sources are done and saved in {out}; "
            "run the same command again to continue"
        )
    if not rows:
        reasons = ", ".join(f"{k}: {v}" for k, v in report["skipped_by_reason"].items())
        first = report["skipped"][0] if report["skipped"] else None
        example = f"; e.g. {first['source']}: {first['detail']}" if first and first.get("detail") else ""
        raise PrepareError(f"no stack was produced from {report['files_found']} files ({reasons}{example}); "
                           f"see {out / REPORT_NAME}")
    return PrepareResult(out=out, rows=rows, report=report)


def _report(config: PrepareConfig, started: datetime, seconds: float, n_files: int,
            rejected: list[Rejected], records: list[SourceRecord], processed: int, reused: int | None,
            frames: int, interrupted: bool) -> dict:
    stacks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in records:
        for row in record.rows:
            stacks[row.split][row.label] += 1
    skipped = [{"source": r.rel, "chunk": None, "reason": r.category, "detail": r.reason} for r in rejected]
    skipped += [{"source": rec.rel, **item} for rec in records for item in rec.skipped]
    return {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "interrupted": interrupted,
        "source": str(config.source),
        "out": str(config.out),
        "settings": config.stack.to_dict(),
        "split_settings": {"val_ids": list(config.split.val_ids), "val_fraction": config.split.val_fraction,
                           "test_fraction": config.split.test_fraction, "seed": config.split.seed,
                           "split_file": str(config.split.split_file) if config.split.split_file else None,
                           "by": config.split.by},
        "layout": config.layout,
        "labels_asked": list(config.labels),
        "fingerprint": config.stack.fingerprint(),
        "workers": config.workers,
        "files_found": n_files,
        "processed_this_run": processed,
        "reused_from_earlier_runs": reused,
        "frames_decoded_this_run": frames,
        "frames_per_second": round(frames / seconds, 1) if seconds > 0 else 0.0,
        "stacks": {split: dict(sorted(labels.items())) for split, labels in sorted(stacks.items())},
        "stacks_total": sum(sum(v.values()) for v in stacks.values()),
        # stacks of one still image (1 channel); the header of the summary says what the stacks are
        "image_stacks": sum(row.channels == 1 and row.frames == 1 for record in records for row in record.rows),
        "skipped": skipped,
        "skipped_by_reason": dict(sorted(Counter(item["reason"] for item in skipped).items())),
    }


def format_summary(report: dict) -> str:
    """The end-of-run summary: what was read, what was made per split and label, what was skipped."""
    settings = StackSettings.from_dict(report["settings"])
    images, total = report.get("image_stacks", 0), report["stacks_total"]
    clips = f"interval {settings.interval}, {settings.channels} channels per clip stack"
    kinds = ("images, 1 channel each" if total and images == total else
             f"{clips}; images: 1 channel each" if images else clips)
    lines = [
        f"Stacks in {report['out']}  ({kinds}, {settings.size}x{settings.size})",
        f"  files found: {report['files_found']}   clips/images read this run: {report['processed_this_run']}"
        f"   reused from earlier runs: {report['reused_from_earlier_runs']}",
        f"  frames decoded: {report['frames_decoded_this_run']}   in {report['seconds']:.1f} s"
        f"   ({report['frames_per_second']:.0f} frames/s)",
    ]
    labels = sorted({label for split in report["stacks"].values() for label in split})
    if labels:
        width = max(8, *(len(label) for label in labels))
        lines.append("  " + "split".ljust(7) + "".join(label.rjust(width + 1) for label in labels) + "total".rjust(8))
        for split, counts in report["stacks"].items():
            cells = "".join(str(counts.get(label, 0)).rjust(width + 1) for label in labels)
            lines.append("  " + split.ljust(7) + cells + str(sum(counts.values())).rjust(8))
    lines.append(f"  stacks total: {report['stacks_total']}")
    relabelled = report.get("labels") or {}
    if any(relabelled.get(k) for k in ("corrected", "mapped", "dropped")):
        origin = f" ({relabelled['corrections_file']})" if relabelled.get("corrections_file") else ""
        lines.append(f"  labels: {relabelled['corrected']} corrected{origin}, {relabelled['mapped']} mapped, "
                     f"{relabelled['dropped']} dropped")
    if relabelled.get("unused_corrections"):
        unused = relabelled["unused_corrections"]
        lines.append(f"  warning: {len(unused)} correction(s) name no file found, e.g. {unused[0]}")
    lines += [f"  warning: {line}" for line in label_and_split_warnings(report)]
    # A clip's last frames that make no whole sequence are left out of every clip: not a fault of the clip,
    # so they are not listed with the skipped files ("skipped: trailing frames: 20" on 20 good clips).
    skipped = {k: n for k, n in report["skipped_by_reason"].items() if k != "trailing frames"}
    if skipped:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped.items())
        lines.append(f"  skipped: {reasons}   (details in {Path(report['out']) / REPORT_NAME})")
    else:
        lines.append("  skipped: none")
    if report["skipped_by_reason"].get("trailing frames"):
        lines.append(f"  clip ends shorter than a sequence, left out: {report['skipped_by_reason']['trailing frames']}")
    return "\n".join(lines)


# Stems of the words label sets of facial expressions use (after --label-map: happy_face, scared, smile...);
# a set with none of them is likely not one.
EMOTION_STEMS = ("afraid", "ang", "calm", "contempt", "disgust", "fear", "happ", "joy", "neutral", "sad", "scare",
                 "shock", "smil", "surpr")


def _names_an_emotion(label: str) -> bool:
    """A word of the label starts with a stem ("wolfganglanger" holds "ang" but names no emotion)."""
    return any(word.startswith(EMOTION_STEMS) for word in re.split(r"[^a-z]+", label.lower()))


def label_and_split_warnings(report: dict) -> list[str]:
    """What a run made silently other than asked: a typo in --labels or --label-map drops or keeps a whole
    class without a word, and a validation split that came out empty only surfaced at `train`."""
    labels = report.get("labels") or {}
    found = ", ".join(labels.get("labels_found", [])) or "none"
    out = []
    if labels.get("unused_label_map"):
        out.append(f"--label-map names label(s) no file has: {', '.join(labels['unused_label_map'])} "
                   f"(labels found: {found})")
    asked = report.get("labels_asked") or []
    kept = labels.get("labels_kept", [normalise_label(label) for label in asked])
    unmatched = [label for label in asked if normalise_label(label) not in kept]
    if unmatched:
        out.append(f"--labels {', '.join(unmatched)} matched no file (labels found: {found})")
    kept_labels = labels.get("labels_kept") or []
    if kept_labels and not any(_names_an_emotion(label) for label in kept_labels):  # a folder of anything
        shown = f"{', '.join(kept_labels[:6])}{', ...' if len(kept_labels) > 6 else ''}"
        out.append(f"no label names an emotion ({shown}): a label is the first part of a file name (Happy_0001.mp4) "
                   "or a <label>/ folder; is --source your folder of labelled clips? (class codes: map them, "
                   "--label-map 0=angry,1=disgust,...)")
    split = report.get("split_settings") or {}
    made = report.get("stacks", {})
    # Only where something is there to train on: a folder of test images alone (FER+ test) needs no val split.
    if "train" in made and "val" not in made and not report.get("interrupted"):
        if split.get("by") == "actor":
            out.append(f"no validation stacks: too few people for --val-fraction {split.get('val_fraction', 0):g} "
                       "to take one whole person and leave one to train on; `train` needs them")
        elif split.get("val_ids"):
            out.append(f"no validation stacks: --val-ids {','.join(split['val_ids'])} matched no usable file (an id "
                       "is the number in Happy_0016, or the whole file stem); `train` needs them")
        elif split.get("val_fraction", 0) > 0 and not split.get("split_file"):
            out.append(f"no validation stacks: no label has enough usable clips for --val-fraction "
                       f"{split['val_fraction']:g} to take one and leave one to train on; `train` needs them: "
                       "add clips, or pass --val-ids")
    return out
