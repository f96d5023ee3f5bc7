"""What `cli.py predict` writes: the printed answer, the timeline CSV and plot, the folder CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pipeline.plots import plot_timeline
from pipeline.serve.predict import Prediction
from stacks.atomic import atomic_write, atomic_write_text
from stacks.timegrid import TOLERANCE


def summary_text(pred: Prediction) -> str:
    """The emotion, every class's probability (largest first) and the share of frames with a face."""
    lines = [f"{pred.source}: {pred.label} ({pred.confidence:.1%})"]
    for name, p in sorted(zip(pred.classes, pred.probs), key=lambda item: -item[1]):
        lines.append(f"  {name:<10} {p:6.1%}  {'#' * int(round(p * 30))}")
    if pred.faces_seen > 1:
        lines.append(f"  {pred.faces_seen} faces in view together: the answer follows the one seen largest and "
                     "longest (--annotate draws its box)" if pred.kind == "video" else
                     f"  {pred.faces_seen} faces found in the image: the answer is for the largest")
    if pred.kind == "video":
        lines.append(f"  face found in {pred.face_ratio:.0%} of the sampled frames; {pred.duration:.2f} s, "
                     f"{len(pred.windows)} window(s)")
        if pred.header_s and pred.duration < 0.9 * pred.header_s - TOLERANCE:  # a copy or upload cut off
            lines.append(f"  the file looks cut short: its header says {pred.header_s:.1f} s, but only "
                         f"{pred.duration:.2f} s could be decoded")
        if pred.duration < pred.sequence_s - TOLERANCE:
            lines.append(f"  shorter than the model's {pred.sequence_s:.1f} s window: its last face fills the rest, "
                         "as in training; a 3-5 s clip is read best")
        changes = emotion_spans(pred)
        if any(a[0] != b[0] for a, b in zip(changes, changes[1:])):  # one mean answer would hide the change
            shown = ", ".join(f"{label} {a:.1f}-{b:.1f} s" for label, a, b in changes[:MAX_SPANS_SHOWN])
            more = (f", ... ({len(changes)} stretches: see --timeline or --plot)"
                    if len(changes) > MAX_SPANS_SHOWN else "")
            lines.append(f"  over time: {shown}{more}")
        if pred.no_face:
            spans = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in merged_spans(pred.no_face))
            lines.append(f"  no face: {spans} (not in the answer)")
    return "\n".join(lines)


MAX_SPANS_SHOWN = 6


def emotion_spans(pred: Prediction) -> list[tuple[str, float, float]]:
    """Runs of consecutive windows with the same top class, as (label, start s, end s), in time order.

    Overlapping windows of two classes meet halfway between their centres. A stretch without a face (no
    window of ``pred.windows`` covers it) ends a run, so no span claims it."""
    spans: list[tuple[str, float, float]] = []
    previous = None
    for window in sorted(pred.windows, key=lambda w: w.start_s):
        label = pred.classes[int(window.probs.argmax())]
        if previous is None or window.start_s > previous.end_s + TOLERANCE:  # the first, or after a gap
            spans.append((label, window.start_s, window.end_s))
        elif spans[-1][0] == label:
            spans[-1] = (label, spans[-1][1], max(spans[-1][2], window.end_s))
        else:
            cut = (previous.start_s + previous.end_s + window.start_s + window.end_s) / 4
            spans[-1] = (spans[-1][0], spans[-1][1], cut)
            spans.append((label, cut, window.end_s))
        previous = window
    return spans


def _csv_text(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def merged_spans(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping (start, end) spans joined: the stretches of a clip they cover."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def write_timeline(pred: Prediction, path: Path) -> None:
    """One row per window, in time order: start, end (s), label, then one probability column per class.

    A window without a face is a row too, labelled "no face", with no probabilities."""
    rows = [(w.start_s, [f"{w.start_s:.3f}", f"{w.end_s:.3f}", pred.classes[int(w.probs.argmax())],
                         f"{w.face_ratio:.3f}", *(f"{p:.6f}" for p in w.probs)]) for w in pred.windows]
    rows += [(a, [f"{a:.3f}", f"{b:.3f}", "no face", f"{0:.3f}", *([""] * len(pred.classes))]) for a, b in pred.no_face]
    rows = [row for _, row in sorted(rows, key=lambda item: item[0])]
    atomic_write_text(Path(path), _csv_text(["start_s", "end_s", "label", "face_ratio", *pred.classes], rows))


def write_timeline_plot(pred: Prediction, path: Path) -> None:
    times = [(w.start_s + w.end_s) / 2 for w in pred.windows]
    probs = [w.probs for w in pred.windows]
    title = f"{Path(pred.source).name}: {pred.label} ({pred.confidence:.0%})"
    atomic_write(Path(path), lambda tmp: plot_timeline(times, probs, list(pred.classes), tmp, title,
                                                           pred.duration))


def write_folder_csv(results: list[Prediction | str], sources: list[Path], classes: tuple[str, ...],
                     path: Path) -> None:
    """One row per file; a file that could not be classified keeps its row, with the reason."""
    rows = []
    for source, result in zip(sources, results):
        if isinstance(result, str):
            error = result.removeprefix(f"{source}: ")  # the file column names it already
            rows.append([str(source), "", "", "", error, *([""] * len(classes))])
        else:
            rows.append([str(source), result.label, f"{result.confidence:.6f}", f"{result.face_ratio:.3f}", "",
                         *(f"{p:.6f}" for p in result.probs)])
    header = ["file", "label", "confidence", "face_ratio", "error", *classes]
    atomic_write_text(Path(path), _csv_text(header, rows))
