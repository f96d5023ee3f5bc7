"""What a grid leaves in grids/<name>/: results.md, results.csv, confusion_grid.png, curves_grid.png.

results.md holds the seed's table (rows: interval -> channels, plus the values of any other axis;
columns: backbone with its parameter count; cells: validation accuracy of each cell's best.pt, the best
of each row in bold), a second table with UAR and macro-F1, a third with training time and inference
latency, and the failed cells with their errors. results.csv has one row per cell with every metric.
Everything is read back from the cells' run folders, so cells trained by earlier runs are included.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.grid.run import CELL_FILE, Cell, read_cell_record, write_cell_record
from stacks.atomic import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from pipeline.grid.run import Plan

log = logging.getLogger(__name__)

RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"
CONFUSION_PNG = "confusion_grid.png"
CURVES_PNG = "curves_grid.png"
ACCURACY_HEADING = "## Validation accuracy (%)"
UAR_HEADING = "## UAR / macro-F1 (%)"
COST_HEADING = "## Training time / inference latency per clip"


@dataclass
class CellResult:
    cell: Cell
    status: str  # done, failed, interrupted, pending
    record: dict
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "done" and bool(self.metrics)


def read_cell(cell: Cell) -> CellResult:
    record = read_cell_record(cell.run_dir)
    status = record.get("status", "pending")
    result = CellResult(cell, status, record)
    if status == "done":
        try:
            result.metrics = json.loads((cell.run_dir / "metrics.json").read_text(encoding="utf-8"))
            with open(cell.run_dir / "history.csv", newline="", encoding="utf-8") as fh:
                result.history = [{k: float(v) for k, v in row.items() if v not in ("", None)}
                                  for row in csv.DictReader(fh)]
        except (OSError, ValueError) as exc:
            result.status = "failed"
            result.record = {**record, "error": f"its results cannot be read ({exc})"}
    return result


# -- latency ------------------------------------------------------------------------------------------


def _latency_clips(cell: Cell, count: int) -> list[Path]:
    """Up to ``count`` of the clips behind the cell's val stacks, where they still are."""
    from stacks.manifest import read_manifest

    data = Path(cell.config.data)
    try:
        report = json.loads((data / "prepare_report.json").read_text(encoding="utf-8"))
        source = Path(report["source"])
        rows = read_manifest(data, split="val")
    except (OSError, ValueError, KeyError):
        return []
    clips = sorted({source / row.source for row in rows if row.frames > 1})
    return [p for p in clips if p.is_file()][:count]


def measure_latency(cell: Cell, clips: list[Path], device: str) -> dict:
    """Median seconds per clip of `predict` (decode, face detection, stacks, model) with the cell's best.pt."""
    from models.served import ModelLoadError, load_serving_model
    from pipeline.serve.predict import PredictError, predict_file
    from pipeline.train.parts import TrainError, resolve_device

    try:
        torch_device = resolve_device(device)
        model = load_serving_model(cell.run_dir, torch_device)
        predict_file(clips[0], model)  # warm-up: MediaPipe graph, first model call
        times = []
        for clip in clips:
            started = time.perf_counter()
            predict_file(clip, model)
            times.append(time.perf_counter() - started)
    except (ModelLoadError, PredictError, TrainError) as exc:
        return {"latency_error": str(exc)}
    except Exception as exc:  # anything else: this cell has no latency, the results are written all the same
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        return {"latency_error": f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"}
    return {"latency_ms": round(1000 * statistics.median(times), 1), "latency_clips": len(times),
            "latency_device": str(torch_device)}


def measure_latencies(plan: Plan, clips_per_cell: int, device: str, progress: bool = True) -> None:
    """Measure, one cell after the other in this process, the finished cells that have no latency yet."""
    if clips_per_cell <= 0:
        return
    from tqdm import tqdm

    todo = []
    for cell in plan.cells:
        record = read_cell_record(cell.run_dir)
        if record.get("status") == "done" and record.get("latency_clips_asked") != clips_per_cell:
            todo.append((cell, record))
    for cell, record in tqdm(todo, desc="latency", unit="cell", disable=not progress or not todo):
        clips = _latency_clips(cell, clips_per_cell)
        found = measure_latency(cell, clips, device) if clips else {
            "latency_error": f"no val clip of {cell.config.data} found (prepare_report.json names the source)"}
        if "latency_error" in found:
            log.info(f"[{cell.id}] latency not measured: {found['latency_error']}")
        write_cell_record(cell.run_dir, {**{k: v for k, v in record.items() if not k.startswith("latency")},
                                         **found, "latency_clips_asked": clips_per_cell})


# -- tables -------------------------------------------------------------------------------------------


def _row_label(cell: Cell) -> str:
    extras = ", ".join(f"{name}={str(v).lower() if isinstance(v, bool) else v}" for name, v in cell.extras)
    return f"{cell.interval} → {cell.channels}" + (f", {extras}" if extras else "")


def _panel_label(cell: Cell) -> str:
    extras = "".join(f", {name}={str(v).lower() if isinstance(v, bool) else v}" for name, v in cell.extras)
    return f"interval {cell.interval} → {cell.channels} channels{extras}"


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f} M"


def _layout(results: list[CellResult]) -> tuple[list[tuple], list[str], dict[tuple, dict[str, CellResult]]]:
    rows: list[tuple] = []
    columns: list[str] = []
    grid: dict[tuple, dict[str, CellResult]] = {}
    for r in results:
        key = r.cell.row_key
        if key not in grid:
            rows.append(key)
            grid[key] = {}
        if r.cell.backbone not in columns:
            columns.append(r.cell.backbone)
        grid[key][r.cell.backbone] = r
    return rows, columns, grid


def _column_header(backbone: str, cells: list[CellResult]) -> str:
    counts = sorted({_millions(r.record["parameters"]) for r in cells if r.ok and r.record.get("parameters")},
                    key=lambda text: float(text.split()[0]))  # by value: 9.8 M before 10.2 M
    if not counts:
        return backbone
    return f"{backbone} ({counts[0] if len(counts) == 1 else counts[0] + '–' + counts[-1]})"


def _table(rows, columns, grid, first: str, value, text, bold: bool = True) -> list[str]:
    headers = [first] + [_column_header(c, [grid[k][c] for k in rows if c in grid[k]]) for c in columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + [":---:"] * len(columns)) + "|"]
    for key in rows:
        present = [grid[key][c] for c in columns if c in grid[key]]
        scores = [value(r) for r in present if r.ok]
        best = max(scores) if scores else None
        cells = []
        for c in columns:
            r = grid[key].get(c)
            if r is None:
                cells.append("")
            elif not r.ok:
                cells.append("failed" if r.status == "failed" else r.status)
            else:
                shown = text(r)
                cells.append(f"**{shown}**" if bold and best is not None and value(r) == best else shown)
        label = _row_label(next(iter(grid[key].values())).cell)
        lines.append("| " + " | ".join([label] + cells) + " |")
    return lines


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(plan: Plan, results: list[CellResult], classes: dict[int, list[str]]) -> str:
    spec = plan.spec
    rows, columns, grid = _layout(results)
    extras = [n for n in spec.axes if n not in ("interval", "backbone")]
    first = "interval → channels" + "".join(f", {n}" for n in extras)
    shared = {k: v for k, v in spec.train.items()}
    any_cell = plan.cells[0].config
    val_sizes = sorted({r.metrics.get("samples") for r in results if r.ok})
    lines = [f"# Grid `{spec.name}`", "",
             f"Validation accuracy of each cell's best.pt ({'/'.join(map(str, val_sizes)) or '?'} val stacks; "
             f"classes: {', '.join(next(iter(classes.values()), []))}). Same seed ({any_cell.seed}) and split for "
             f"every cell; {any_cell.epochs} epoch(s), batch {any_cell.batch_size}, {any_cell.input.image_size} px"
             + (f"; shared options: {', '.join(f'{k}={v}' for k, v in sorted(shared.items()))}" if shared else "")
             + ". Rows: image interval → channels per stack; columns: backbone (parameters). Best of each row in bold.",
             "", ACCURACY_HEADING, ""]
    lines += _table(rows, columns, grid, first, lambda r: r.metrics["accuracy"], lambda r: _pct(r.metrics["accuracy"]))
    lines += ["", UAR_HEADING, ""]
    lines += _table(rows, columns, grid, first, lambda r: r.metrics["uar"],
                    lambda r: f"{_pct(r.metrics['uar'])} / {_pct(r.metrics['macro_f1'])}")
    lines += ["", COST_HEADING, ""]

    def cost(r: CellResult) -> str:
        seconds = r.record.get("train_seconds")
        latency = r.record.get("latency_ms")
        return (f"{seconds:.0f} s" if seconds is not None else "?") + " / " + (
            f"{latency:.0f} ms" if latency is not None else "n/a")

    lines += _table(rows, columns, grid, first, lambda r: 0.0, cost, bold=False)
    failed = [r for r in results if not r.ok]
    if failed:
        lines += ["", "## Cells without a result", ""]
        lines += [f"- `{r.cell.id}`: {r.status}" + (f": {r.record.get('error')}" if r.record.get("error") else "")
                  for r in failed]
    lines += ["", f"Every cell is a run folder in `{spec.out / 'runs'}` (`cli.py evaluate` and `cli.py predict` "
              f"take it). All metrics: `{RESULTS_CSV}`; figures: `{CONFUSION_PNG}`, `{CURVES_PNG}`.", ""]
    return "\n".join(lines)


def results_csv(plan: Plan, results: list[CellResult]) -> str:
    extras = [n for n in plan.spec.axes if n not in ("interval", "backbone")]
    classes: list[str] = []
    for r in results:
        for c in r.metrics.get("classes", []):
            if c not in classes:
                classes.append(c)
    columns = (["cell", "status", "error", "interval", "channels", "backbone", *extras, "parameters", "accuracy",
                "war", "uar", "macro_f1", "val_loss", "val_samples", "best_epoch", "epochs", "train_seconds",
                "latency_ms_per_clip", "latency_clips", "latency_device", "host", "run_dir"]
               + [f"{m}_{c}" for c in classes for m in ("precision", "recall", "f1")])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in results:
        m, rec, cell = r.metrics, r.record, r.cell
        row: dict[str, Any] = {"cell": cell.id, "status": r.status, "error": rec.get("error", ""),
                               "interval": cell.interval, "channels": cell.channels, "backbone": cell.backbone,
                               **dict(cell.extras), "parameters": rec.get("parameters", ""),
                               "best_epoch": rec.get("best_epoch", m.get("epoch", "")), "epochs": rec.get("epochs", ""),
                               "train_seconds": rec.get("train_seconds", ""),
                               "latency_ms_per_clip": rec.get("latency_ms", ""),
                               "latency_clips": rec.get("latency_clips", ""),
                               "latency_device": rec.get("latency_device", ""), "host": rec.get("host", ""),
                               "run_dir": str(cell.run_dir)}
        if r.ok:
            row.update({k: round(m[k], 6) for k in ("accuracy", "war", "uar", "macro_f1")})
            row.update(val_loss=round(m.get("loss", float("nan")), 6), val_samples=m.get("samples", ""))
            for c, pc in m.get("per_class", {}).items():
                row.update({f"{k}_{c}": round(pc[k], 6) for k in ("precision", "recall", "f1")})
        writer.writerow(row)
    return buf.getvalue()


# -- figures ------------------------------------------------------------------------------------------


def plot_confusion_grid(plan: Plan, results: list[CellResult], path: Path) -> None:
    """Every cell's confusion matrix (row-normalised, counts written in), one row of panels per table row."""
    from pipeline.plots import draw_confusion, plt, save_png  # pyplot with the Agg backend selected

    rows, columns, grid = _layout(results)
    side = 2.9
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(side * len(columns) + 1.2, side * len(rows) + 0.8),
                             squeeze=False)
    for i, key in enumerate(rows):
        for j, backbone in enumerate(columns):
            ax = axes[i][j]
            r = grid[key].get(backbone)
            label = _panel_label(next(iter(grid[key].values())).cell)
            if r is None or not r.ok:
                ax.axis("off")
                why = (r.record.get("error") or "")[:80] if r else ""
                ax.text(0.5, 0.5, f"{backbone}\n{label}\n{r.status if r else 'not in grid'}\n{why}", ha="center",
                        va="center", fontsize=8, color="firebrick", wrap=True)
                continue
            draw_confusion(ax, r.metrics["confusion_matrix"], r.metrics["classes"], text_size=7, tick_size=7)
            ax.set_title(f"{backbone}: acc {_pct(r.metrics['accuracy'])}%", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{label}\ntrue", fontsize=8)
            if i == len(rows) - 1:
                ax.set_xlabel("predicted", fontsize=8)
    fig.suptitle(f"Grid {plan.spec.name}: validation confusion matrices (rows: interval → channels)")
    save_png(fig, path, dpi=100)


def plot_curves_grid(plan: Plan, results: list[CellResult], path: Path) -> None:
    """Validation accuracy per epoch of every cell: one panel per table row, one line per backbone."""
    from matplotlib.ticker import MaxNLocator

    from pipeline.plots import plt, save_png  # pyplot with the Agg backend selected

    rows, columns, grid = _layout(results)
    ncols = min(3, len(rows))
    nrows = -(-len(rows) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.6 * nrows), squeeze=False)
    for n, key in enumerate(rows):
        ax = axes[n // ncols][n % ncols]
        for backbone in columns:
            r = grid[key].get(backbone)
            if r is not None and r.ok and r.history:
                ax.plot([h["epoch"] for h in r.history], [h["val_acc"] for h in r.history], marker="o",
                        label=backbone)
        ax.set_title(_panel_label(next(iter(grid[key].values())).cell), fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("val accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    for n in range(len(rows), nrows * ncols):
        axes[n // ncols][n % ncols].axis("off")
    fig.suptitle(f"Grid {plan.spec.name}: validation accuracy per epoch")
    save_png(fig, path, dpi=100)


def write_results(plan: Plan, classes: dict[int, list[str]]) -> str:
    """Write the four result files into grids/<name>/; returns the Markdown."""
    out = plan.spec.out
    results = [read_cell(cell) for cell in plan.cells]
    text = markdown(plan, results, classes)
    atomic_write_text(out / RESULTS_MD, text)
    atomic_write_text(out / RESULTS_CSV, results_csv(plan, results))
    atomic_write(out / CONFUSION_PNG, lambda tmp: plot_confusion_grid(plan, results, tmp))
    atomic_write(out / CURVES_PNG, lambda tmp: plot_curves_grid(plan, results, tmp))
    return text


def table_section(text: str, heading: str) -> str:
    """One table of a results.md, by its heading (tests and scripts compare tables with it)."""
    part = text.split(heading, 1)[1]
    return part.split("\n## ", 1)[0].strip()


__all__ = ["CELL_FILE", "measure_latencies", "read_cell", "table_section", "write_results"]
