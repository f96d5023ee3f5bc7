"""`cli.py grid`: the interval x backbone benchmark grid (any other training option can be an axis too).

A grid is a spec (axes, options shared by every cell, how the clips become stacks), checked completely
before anything runs. Each interval's stacks are prepared once (``prepare``'s cache makes reruns cheap);
each cell is an ordinary run folder, ``grids/<name>/runs/<cell>/``, that `evaluate` and `predict` accept.

Resumable: a cell whose folder holds a finished run (``grid_cell.json`` says ``done``) with the same
settings, trained on the same stacks (``grid_cell.json`` keeps their identity: ``stacks_identity``), is not
trained again; an interrupted cell continues from its ``last.pt``; a failed cell is
recorded there with its error, the other cells go on, and the next run tries it again. ``--force``
trains every cell from scratch.

The option names and their parsing are `cli.py train`'s and `cli.py prepare`'s own: both come from the
stages' settings (``TrainConfig``, ``PrepareConfig``: ``pipeline.options``), and a cell's ``TrainConfig`` and
an interval's ``PrepareConfig`` are built from them the way the stages' own commands build theirs, so a flag
means the same thing in `train`, in `prepare` and in `grid`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import itertools
import json
import logging
import os
import shutil
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config_files import ConfigFileError, read_table
from pipeline.options import Option, OptionError, build, build_part, input_option, option_table
from pipeline.prepare.settings import PrepareConfig
from pipeline.train.settings import TrainConfig, is_plain_name
from stacks.settings import StackSettings

log = logging.getLogger(__name__)

CELL_FILE = "grid_cell.json"  # in each cell's run folder: done / failed / interrupted, error, timings
SPEC_FILE = "grid.json"  # in grids/<name>/: the resolved spec of the last run
REPO = Path(__file__).resolve().parents[2]

DEFAULT_INTERVALS = (5, 10, 15)
DEFAULT_BACKBONES = ("mobilenetv3_large", "efficientnetv2_s", "efficientnetv2_m")

# `train` options the grid sets itself for every cell.
GRID_MANAGED_TRAIN = {"data", "interval", "name", "runs_dir", "resume", "overwrite", "no_progress"}
# `prepare` options the grid sets itself (or names differently: prepare's --seed is the grid's --split-seed).
GRID_MANAGED_PREPARE = {"source", "out", "interval", "force", "no_progress", "help"}
PREPARE_RENAMED = {"seed": "split_seed"}

# Top-level keys of a grid file, besides the [axes], [train] and [prepare] tables.
FILE_KEYS = {"name", "grids_dir", "source", "stacks_dir", "no_prepare", "jobs", "backend", "address", "force",
             "latency_clips"}
FILE_TABLES = ("axes", "train", "prepare")
ALIASES = {"intervals": "interval", "backbones": "backbone"}


class GridError(Exception):
    """A grid that cannot run as asked; the message says what to change (one line from the CLI)."""


class GridInterrupted(Exception):
    """Ctrl-C: finished cells are kept, the running one resumes from its last.pt on the next run."""


# -- the options: `train`'s and `prepare`'s own, from their settings ------------------------------------


@functools.lru_cache(maxsize=1)
def options() -> dict[str, Option]:
    """Every option a grid accepts, by name: the axis of intervals, the training options (axes or shared), then
    prepare's (``section`` says which)."""
    interval = dataclasses.replace(
        input_option("interval", int, DEFAULT_INTERVALS, "image intervals: every k-th frame of a sequence goes "
                     "into a stack", "axes"), flag="--intervals", section="train")
    found = [dataclasses.replace(o, section="train") for o in option_table(TrainConfig)
             if o.name not in GRID_MANAGED_TRAIN]
    for o in option_table(PrepareConfig):
        if o.name not in GRID_MANAGED_PREPARE:
            name = PREPARE_RENAMED.get(o.name, o.name)
            found.append(dataclasses.replace(o, name=name, flag="--" + name.replace("_", "-"), section="prepare"))
    return {o.name: o for o in [interval, *found]}


def _parse(opt: Option, raw: Any, where: str) -> Any:
    try:
        return opt.parse(raw, where)
    except OptionError as exc:
        raise GridError(str(exc)) from None


def _unknown(name: str, valid: list[str], what: str, where: str = "") -> GridError:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return GridError(f"{where}unknown {what} {name!r}{hint}; valid: {', '.join(valid)}")


# -- the spec ------------------------------------------------------------------------------------


@dataclass
class GridSpec:
    """A whole grid, as given by flags and/or a grid file; ``plan_grid`` checks it."""

    name: str = "grid"
    grids_dir: Path = Path("grids")
    source: Path = Path("data/clips")
    stacks_dir: Path = Path("data/stacks")
    prepare: bool = True  # False: use the stacks already in <stacks_dir>/interval_<k>
    axes: dict[str, list] = field(default_factory=dict)  # interval and backbone first, then the others
    train: dict[str, Any] = field(default_factory=dict)  # shared training options (typed)
    prepare_options: dict[str, Any] = field(default_factory=dict)  # shared prepare options (typed)
    jobs: int | None = None  # local: parallel processes (default 1); ray: cells in flight (default: all)
    backend: str = "local"  # "local" (joblib) or "ray"
    address: str | None = None
    force: bool = False
    latency_clips: int = 3
    progress: bool = True

    @property
    def out(self) -> Path:
        return self.grids_dir / self.name

    def to_dict(self) -> dict:
        def plain(v: Any) -> Any:
            return str(v) if isinstance(v, Path) else v

        return {"name": self.name, "grids_dir": str(self.grids_dir), "source": str(self.source),
                "stacks_dir": str(self.stacks_dir), "prepare": self.prepare,
                "axes": {k: [plain(v) for v in vs] for k, vs in self.axes.items()},
                "train": {k: plain(v) for k, v in self.train.items()},
                "prepare_options": {k: plain(v) for k, v in self.prepare_options.items()},
                "jobs": self.jobs, "backend": self.backend, "address": self.address, "force": self.force,
                "latency_clips": self.latency_clips}


def read_grid_file(path: Path) -> dict:
    """A TOML (tomllib) or YAML (PyYAML, where installed) grid file -> its raw table."""
    try:
        return read_table(Path(path), "grid file")
    except ConfigFileError as exc:
        raise GridError(str(exc)) from None


def _canonical(key: str) -> str:
    key = str(key).strip().replace("-", "_")
    return ALIASES.get(key, key)


def _as_list(raw: Any) -> list:
    return list(raw) if isinstance(raw, (list, tuple)) else [raw]


def _split_flag(text: str) -> list[str]:
    return [item.strip() for item in str(text).split(",") if item.strip()]


def spec_from_sources(file_data: dict | None, flags: dict[str, Any], file_name: str = "grid file") -> GridSpec:
    """Merge defaults < grid file < command-line flags into a spec, checking every name and value.

    ``flags``: option name -> raw string as typed (a comma-separated list makes an axis), for the
    options given on the command line only; plus the grid's own keys (name, jobs, ...) already typed.
    """
    opts = options()
    spec = GridSpec()
    values: dict[str, list] = {"interval": list(DEFAULT_INTERVALS), "backbone": list(DEFAULT_BACKBONES)}
    explicit_axes: list[str] = []

    def set_value(name: str, raw: Any, where: str, *, axis_ok: bool, from_flag: bool) -> None:
        opt = opts[name]
        if from_flag:  # a train option's comma-separated values make an axis; prepare's values may hold commas
            items = _split_flag(raw) if opt.section == "train" else [raw]
        else:
            items = _as_list(raw)
        if not items:
            raise GridError(f"{where}{opt.flag} has no value")
        if len(items) > 1 and (opt.section != "train" or not axis_ok):
            why = ("prepare options are shared by every cell: only --intervals varies the stacks"
                   if opt.section == "prepare" else "put it under [axes] to make it an axis")
            raise GridError(f"{where}{opt.flag} takes one value here ({why})")
        try:
            parsed = [_parse(opt, item, where) for item in items]
        except GridError as exc:
            if opt.section == "prepare" and "," in str(raw):
                raise GridError(f"{exc}: prepare options are shared by every cell, only --intervals varies "
                                "the stacks") from None
            raise
        if len(set(map(repr, parsed))) != len(parsed):
            raise GridError(f"{where}{opt.flag} lists a value twice: {items}")
        values[name] = parsed
        if name not in explicit_axes:
            explicit_axes.append(name)

    def apply_own(key: str, raw: Any, where: str) -> None:
        kinds = {"name": str, "grids_dir": Path, "source": Path, "stacks_dir": Path, "no_prepare": bool, "jobs": int,
                 "backend": str, "address": str, "force": bool, "latency_clips": int}
        kind = kinds[key]
        if raw is None:
            return
        if kind is bool and not isinstance(raw, bool):
            raise GridError(f"{where}{key} takes true or false (got {raw!r})")
        if kind is int and (isinstance(raw, bool) or not isinstance(raw, int)):
            raise GridError(f"{where}{key} takes an integer (got {raw!r})")
        if kind in (str, Path) and not isinstance(raw, (str, Path)):
            raise GridError(f"{where}{key} takes a {'path' if kind is Path else 'string'} (got {raw!r})")
        if key == "no_prepare":
            spec.prepare = not raw
        else:
            setattr(spec, key, kind(raw))

    valid_names = sorted(opts)
    if file_data:
        where = f"{file_name}: "
        for key, raw in file_data.items():
            key_c = _canonical(key)
            if key_c in FILE_TABLES:
                if not isinstance(raw, dict):
                    raise GridError(f"{where}[{key_c}] must be a table of options")
                section_names = sorted(n for n, o in opts.items()
                                       if (o.section == "prepare") == (key_c == "prepare"))
                for name, value in raw.items():
                    name_c = _canonical(name)
                    if name_c not in section_names:
                        raise _unknown(str(name), section_names, f"option in [{key_c}]", where)
                    set_value(name_c, value, f"{where}[{key_c}] ", axis_ok=key_c == "axes", from_flag=False)
            elif key_c in FILE_KEYS:
                apply_own(key_c, raw, where)
            else:
                top = sorted(FILE_KEYS) + [f"[{t}]" for t in FILE_TABLES]
                raise _unknown(str(key), top, "top-level key", where + "training options go under [axes] or "
                               "[train], stack options under [prepare]; ")
    for key, raw in flags.items():
        if key in FILE_KEYS or key == "progress":
            if key == "progress":
                spec.progress = bool(raw)
            else:
                apply_own(key, raw, "")
            continue
        if key not in opts:
            raise _unknown(key, valid_names, "option")
        set_value(key, raw, "", axis_ok=True, from_flag=True)

    axes_order = ["interval", "backbone"] + [n for n in explicit_axes if n not in ("interval", "backbone")]
    for name in axes_order:
        vals = values[name]
        if opts[name].section == "prepare":
            spec.prepare_options[name] = vals[0]
        elif name in ("interval", "backbone") or len(vals) > 1:
            spec.axes[name] = vals
        else:
            spec.train[name] = vals[0]
    if spec.backend not in ("local", "ray"):
        raise GridError(f"--backend must be 'local' or 'ray' (got {spec.backend!r})")
    if spec.jobs is not None and spec.jobs < 1:
        raise GridError(f"--jobs must be >= 1 (got {spec.jobs})")
    if spec.latency_clips < 0:
        raise GridError(f"--latency-clips must be >= 0 (got {spec.latency_clips})")
    if spec.address and spec.backend != "ray":
        raise GridError("--address is for --backend ray")
    if not is_plain_name(spec.name):
        raise GridError(f"--name must be a plain folder name, without / (got {spec.name!r})")
    return spec


# -- the plan: every cell's TrainConfig, made and checked before anything runs ---------------------


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    id: str
    interval: int
    channels: int
    backbone: str
    extras: tuple[tuple[str, Any], ...]  # the values of the other axes, in axis order
    config: TrainConfig

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    @property
    def row_key(self) -> tuple:
        return (self.interval, *(v for _, v in self.extras))


@dataclass
class Plan:
    spec: GridSpec
    cells: list[Cell]
    prepares: dict[int, PrepareConfig]  # interval -> how its stacks are made (or found, without prepare)
    stacks: dict[int, StackSettings]


def _value_text(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, Path):
        text = value.name
    return "".join(c if c.isalnum() or c in ".+-" else "-" for c in text)


def cell_id(interval: int, backbone: str, extras: tuple[tuple[str, Any], ...]) -> str:
    return "_".join([f"i{interval}", backbone] + [f"{name.replace('_', '-')}={_value_text(v)}" for name, v in extras])


def _prepare_values(spec: GridSpec) -> dict[str, Any]:
    """`prepare`'s option values every interval shares: the grid's [prepare] options under prepare's names."""
    renamed = {grid: own for own, grid in PREPARE_RENAMED.items()}
    return {**{renamed.get(k, k): v for k, v in spec.prepare_options.items()},
            "source": spec.source, "force": False, "no_progress": not spec.progress}


def _stack_settings(values: dict[str, Any], interval: int) -> StackSettings:
    try:
        stack = build_part(PrepareConfig, "stack", {**values, "interval": interval})
    except ValueError as exc:
        raise GridError(f"--intervals {interval}: {exc}") from None
    if stack.channels < 2:
        raise GridError(f"--intervals {interval} gives {stack.channels} channel with --sequence-length "
                        f"{stack.sequence_length}: every interval must give at least 2 channels (an interval below "
                        f"{stack.sequence_length}, e.g. {max(1, stack.sequence_length // 2)})")
    return stack


def _prepare_config(spec: GridSpec, values: dict[str, Any], stack: StackSettings) -> PrepareConfig:
    """`cli.py prepare`'s own settings for one interval, built from the same option definitions."""
    try:
        config = build(PrepareConfig, {**values, "interval": stack.interval,
                                       "out": spec.stacks_dir / f"interval_{stack.interval}"})
    except ValueError as exc:
        raise GridError(str(exc)) from None
    assert config.stack == stack, (config.stack, stack)
    return config


def plan_grid(spec: GridSpec) -> Plan:
    """Every check that can be made before anything runs; raises GridError with what to change."""
    from models.head import HeadSettings
    from models.registry import UnknownBackbone, get_backbone

    opts = options()
    for backbone in spec.axes["backbone"]:
        try:
            get_backbone(backbone)
        except UnknownBackbone as exc:
            raise GridError(str(exc).replace("unknown backbone", "--backbones: unknown backbone")) from None
    prep = _prepare_values(spec)
    stacks = {k: _stack_settings(prep, k) for k in spec.axes["interval"]}
    prepares = {k: _prepare_config(spec, prep, stack) for k, stack in stacks.items()}
    if spec.prepare:
        if not spec.source.is_dir():
            raise GridError(f"--source {spec.source} is not a folder of clips; pass --source DIR, or --no-prepare "
                            f"to use stacks already in {spec.stacks_dir}/interval_<k>")
    else:
        for k, config in prepares.items():
            if not (config.out / "manifest.csv").is_file():
                raise GridError(f"--no-prepare: no stacks for interval {k} in {config.out} (no manifest.csv); "
                                f"prepare them with `python cli.py prepare --interval {k} --out {config.out}`")
    extra_axes = [n for n in spec.axes if n not in ("interval", "backbone")]
    cells = []
    for combo in itertools.product(*(spec.axes[n] for n in ["interval", "backbone", *extra_axes])):
        interval, backbone, *rest = combo
        extras = tuple(zip(extra_axes, rest))
        cid = cell_id(interval, backbone, extras)
        values = {**spec.train, **dict(extras), "backbone": backbone, "data": prepares[interval].out, "name": cid,
                  "runs_dir": spec.out / "runs", "no_progress": not spec.progress}
        try:
            config = build(TrainConfig, values)
            HeadSettings(config.head_hidden, config.head_dropout, config.head_dropout_hidden)
        except ValueError as exc:
            values = ", ".join(f"{opts[n].flag} {v}" for n, v in extras) or "every cell"
            raise GridError(f"{exc} ({values})") from None
        for flag, path in (("--weights", config.weights), ("--init", config.init)):
            if path is not None and not Path(path).exists():
                raise GridError(f"{flag} {path}: no such file or run folder")
        cells.append(Cell(cid, interval, stacks[interval].channels, backbone, extras, config))
    ids = [c.id for c in cells]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise GridError(f"two cells would share the run folder {twice[0]} (axis values that differ only in "
                        "their folder, or in characters a folder name cannot hold): make the values distinct")
    return Plan(spec, cells, prepares, stacks)


# -- running one cell (in this process, a joblib worker or a Ray task) -------------------------------


@dataclass(frozen=True)
class CellTask:
    cell: str
    config: TrainConfig
    mode: str  # "fresh", "resume" or "force"
    threads: int = 0  # torch threads for this cell (0: the config's)


@dataclass
class CellOutcome:
    cell: str
    status: str  # "done", "failed", "interrupted"
    error: str = ""
    seconds: float = 0.0
    host: str = ""


def read_cell_record(run_dir: Path) -> dict:
    """The cell's record ({} for a cell not started yet); one that cannot be read is a GridError, never "pending"
    (that would train a finished cell again, or report a failed one as waiting)."""
    path = Path(run_dir) / CELL_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not valid JSON"
        raise GridError(f"{path}: corrupt cell record ({reason}); delete it to train the cell again, or rerun with "
                        "--force") from None
    if not isinstance(record, dict):
        raise GridError(f"{path}: corrupt cell record (not a JSON object); delete it to train the cell again, or "
                        "rerun with --force")
    return record


def write_cell_record(run_dir: Path, record: dict) -> None:
    from stacks.atomic import atomic_write_text

    atomic_write_text(Path(run_dir) / CELL_FILE, json.dumps(record, indent=2) + "\n")


def check_stacks_readable(data: Path) -> None:
    """The first thing a worker does: the stacks must be at the same path on every machine that trains."""
    from stacks.manifest import read_manifest

    manifest = Path(data) / "manifest.csv"
    host = socket.gethostname()
    hint = ("with --backend ray the stack folder (and grids/<name>) must be on a file system every Ray node "
            "mounts at the same absolute path (e.g. NFS); see README, `cli.py grid`")
    try:
        rows = read_manifest(Path(data))
    except (OSError, FileNotFoundError):
        raise GridError(f"worker {host} cannot read {manifest}: {hint}") from None
    first_of_split = {row.split: row for row in reversed(rows)}.values()  # a wrong mount shows at once
    missing = next((row.path for row in first_of_split if not row.path.is_file()), None)
    if missing is not None:
        raise GridError(f"worker {host} cannot read stack {missing}: {hint}")


# Prepare's split settings (as prepare_report.json names them) -> the grid's flag for each.
SPLIT_FLAGS = {"val_ids": "--val-ids", "split_file": "--split-file", "val_fraction": "--val-fraction",
               "test_fraction": "--test-fraction", "seed": "--split-seed", "by": "--split-by"}


def _split_dict(config: PrepareConfig) -> dict:
    """The split settings as ``prepare`` writes them into prepare_report.json."""
    split = config.split
    return {"val_ids": list(split.val_ids), "val_fraction": split.val_fraction, "test_fraction": split.test_fraction,
            "seed": split.seed, "split_file": str(split.split_file) if split.split_file else None, "by": split.by}


def stacks_identity(data: Path) -> dict:
    """What a stack folder holds: a hash of its manifest.csv (every stack, its split and its settings
    fingerprint) and the stack and split settings its prepare_report.json names. A cell keeps it in its
    grid_cell.json, so a cell trained on other stacks is never reported as if trained on these."""
    folder = Path(data)
    try:
        manifest = hashlib.sha256((folder / "manifest.csv").read_bytes()).hexdigest()[:16]
    except OSError:
        manifest = None
    try:
        report = json.loads((folder / "prepare_report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        report = {}
    report = report if isinstance(report, dict) else {}
    return {"manifest": manifest, "settings": report.get("settings"), "split": report.get("split_settings")}


def planned_stacks(config: PrepareConfig) -> dict:
    """The identity the grid's own `prepare` gives a stack folder (the manifest is known only once it ran)."""
    return {"manifest": None, "settings": config.stack.to_dict(), "split": _split_dict(config)}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples -> lists, as read back from JSON


def stacks_changes(then: dict | None, now: dict, folder: Path) -> list[str]:
    """How the stacks a cell was trained on (``then``) differ from ``now``: flags, or the folder; [] if same
    (or unknown: a cell recorded before identities were kept)."""
    if not isinstance(then, dict):
        return []
    changed = []
    for key, flags in (("settings", None), ("split", SPLIT_FLAGS)):
        old, new = then.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            old, new = _plain(old), _plain(new)
            changed += sorted((flags or {}).get(k, "--" + k.replace("_", "-"))
                              for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not changed and then.get("manifest") and now.get("manifest") and then["manifest"] != now["manifest"]:
        changed.append(f"other stacks in {folder}: prepared again since")
    return changed


def _clear_cell_dir(run_dir: Path) -> None:
    """--force: the grid deletes its own cell folders (only ones that look like a cell)."""
    if not run_dir.exists():
        return
    marks = (CELL_FILE, "config.json", "last.pt", "best.pt")
    if not any((run_dir / m).is_file() for m in marks):
        raise GridError(f"--force: {run_dir} holds files but is not a grid cell; refusing to delete it")
    shutil.rmtree(run_dir)


def _count_parameters(run_dir: Path) -> int:
    from models.checkpoint import load_checkpoint, model_from_checkpoint
    from models.network import count_parameters

    return count_parameters(model_from_checkpoint(load_checkpoint(run_dir / "best.pt")))


def _history_seconds(run_dir: Path) -> float:
    """Seconds of every epoch in history.csv: a resumed cell's training time counts all its sessions."""
    import csv

    try:
        with open(run_dir / "history.csv", newline="", encoding="utf-8") as fh:
            return sum(float(row.get("time_seconds") or 0) for row in csv.DictReader(fh))
    except (OSError, ValueError):
        return 0.0


class _CellPrefix(logging.Filter):
    """Starts each line of a cell's training with ``[cell]``, so that cells trained side by side stay apart."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        self.cell = cell

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = f"[{self.cell}] {record.getMessage()}", ()
        return True


def run_cell(task: CellTask) -> CellOutcome:
    """Train one cell and record the outcome in its run folder; never raises for a cell that fails."""
    from pipeline.train.loop import TrainError, TrainInterrupted, run_train

    started = time.perf_counter()
    config = task.config
    run_dir = config.run_dir
    host = socket.gethostname()
    record: dict[str, Any] = {"cell": task.cell, "host": host}

    import torch

    from pipeline.train.loop import log as train_log

    threads_before = torch.get_num_threads()  # run_train sets the process's torch threads: put them back
    try:
        check_stacks_readable(config.data)
        if task.mode == "force":
            _clear_cell_dir(run_dir)
        # Which stacks this cell trains on, kept from the start: a cell whose worker dies still says so.
        record["stacks"] = stacks_identity(config.data)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_cell_record(run_dir, {**record, "status": "running"})
        config = dataclasses.replace(config, resume=task.mode == "resume", overwrite=False,
                                     threads=task.threads or config.threads)
        prefix = _CellPrefix(task.cell)
        train_log.addFilter(prefix)
        try:
            result = run_train(config)
        finally:
            train_log.removeFilter(prefix)
        seconds = _history_seconds(run_dir) or time.perf_counter() - started
        record.update(status="done", error="", train_seconds=round(seconds, 2), epochs=result.state.epoch,
                      best_epoch=result.state.best_epoch, parameters=_count_parameters(run_dir),
                      threads=config.threads, device=str(config.device))
    except TrainInterrupted as exc:
        record.update(status="interrupted", error=exc.kept)  # the grid continues it by running again, no --resume
    except Exception as exc:  # a cell that fails must not stop the grid
        error = str(exc) if isinstance(exc, (TrainError, GridError)) else f"{type(exc).__name__}: {exc}"
        record.update(status="failed", error=error.strip().splitlines()[0] if error.strip() else type(exc).__name__,
                      traceback=traceback.format_exc(limit=6)[-3000:])
    finally:
        torch.set_num_threads(threads_before)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        write_cell_record(run_dir, record)
    except OSError as exc:
        record["error"] = (record.get("error") or "") + f" (and {run_dir / CELL_FILE} cannot be written: {exc})"
        record["status"] = "failed"
    return CellOutcome(task.cell, record["status"], record.get("error", ""), time.perf_counter() - started, host)


# -- the grid ------------------------------------------------------------------------------------


def _changed_settings(cell: Cell) -> list[str]:
    """Settings of an existing cell run that differ from the plan (those a resume may not change)."""
    from pipeline.train.loop import RESUME_MAY_CHANGE

    path = cell.run_dir / "config.json"
    try:
        then = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    now = cell.config.to_dict()
    for d in (now, then):
        for key in ("data", "weights", "init"):  # relative here, absolute in a Ray cell's config.json
            if d.get(key):
                d[key] = str(Path(d[key]).resolve())
    return sorted(k for k in then if k not in RESUME_MAY_CHANGE and now.get(k) != then[k])


def cell_mode(cell: Cell, force: bool, stacks: dict | None = None) -> str:
    """What this run does with a cell: skip (finished, same settings and stacks), resume, fresh or force.

    ``stacks``: the identity of the stacks the cell would train on (default: its stack folder's now)."""
    if force:
        return "force"
    record = read_cell_record(cell.run_dir)
    has_last = (cell.run_dir / "last.pt").is_file()
    if record.get("status") == "failed" and (_changed_settings(cell) or stacks_changes(
            record.get("stacks"), stacks_identity(cell.config.data) if stacks is None else stacks,
            Path(cell.config.data))):
        return "force"  # a failed cell tried again with other settings or stacks starts from scratch
    if record.get("status") == "done" and (cell.run_dir / "best.pt").is_file():
        try:
            then = json.loads((cell.run_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            then = {}
        if then.get("epochs") == cell.config.epochs and then.get("patience") == cell.config.patience:
            return "skip"
        return "resume"  # other --epochs / --patience: continue from last.pt, the Trainer decides
    return "resume" if has_last else "fresh"


@dataclass
class GridResult:
    out: Path
    plan: Plan
    trained: list[str]  # cells trained (or resumed) by this run, successfully
    reused: list[str]  # cells finished by an earlier run
    failed: dict[str, str]  # cell -> error
    markdown: str


def check_existing(plan: Plan, stacks: dict[int, dict] | None = None) -> None:
    """Refuse to mix: cells of this grid trained with other settings, or on other stacks, need --force or
    another --name (a failed cell is simply trained again from scratch).

    ``stacks``: interval -> the identity of its stacks (``stacks_identity``); default: what the grid's
    `prepare` will make (``planned_stacks``), or with --no-prepare what the stack folders hold now; then the
    stack folders are checked too (``check_stack_folders``: --force is about cells, never other stacks)."""
    before_prepare = stacks is None
    if stacks is None:
        stacks = {k: planned_stacks(config) if plan.spec.prepare else stacks_identity(config.out)
                  for k, config in plan.prepares.items()}
    stale = []
    for cell in plan.cells if not plan.spec.force else []:
        record = read_cell_record(cell.run_dir)
        if record.get("status") == "failed":
            continue
        changed = ['--' + k.replace('_', '-') for k in _changed_settings(cell)]
        changed += stacks_changes(record.get("stacks"), stacks[cell.interval], plan.prepares[cell.interval].out)
        if changed:
            stale.append(f"{cell.id} ({', '.join(changed)})")
    if stale:
        raise GridError(f"{plan.spec.out} already holds cells trained with other settings: {'; '.join(stale[:3])}"
                        f"{' ...' if len(stale) > 3 else ''}; rerun with --force to train them again, or choose "
                        "another --name")
    if before_prepare and plan.spec.prepare:
        check_stack_folders(plan)


def check_source(plan: Plan) -> None:
    """A --source with nothing to prepare, found before anything runs (--dry-run said all was well, and the
    grid failed in prepare). Apart from ``plan_grid``: it reads the whole folder, which a plan need not."""
    from pipeline.prepare.run import PrepareError, find_sources

    if not plan.spec.prepare:
        return
    try:  # labelled as prepare labels them: --labels, --label-map and corrections applied
        sources, rejected, _ = find_sources(next(iter(plan.prepares.values())))
    except PrepareError as exc:
        raise GridError(f"--source: {exc}") from None
    if not sources:
        first = f": {rejected[0].rel}: {rejected[0].reason}" if rejected else ""
        raise GridError(f"--source {plan.spec.source} holds no usable clips or images (named <Label>_<id>.mp4, or "
                        f"in <label>/ folders){first}")


def check_stack_folders(plan: Plan) -> None:
    """The grid's `prepare` writes into <stacks-dir>/interval_<k>, where `prepare` puts its stacks by default
    and other grids put theirs: stacks made there with other settings were replaced without a word."""
    for config in plan.prepares.values():
        if not (config.out / "manifest.csv").is_file():
            continue
        changed = stacks_changes(stacks_identity(config.out), planned_stacks(config), config.out)
        if changed:
            raise GridError(f"{config.out} holds stacks made with other settings ({', '.join(changed)}), by "
                            "`prepare` or another grid, which this grid would replace: pass --stacks-dir DIR to "
                            f"keep both, --no-prepare to train on them, or delete {config.out} first")


def _prepare_all(plan: Plan) -> dict[int, list[str]]:
    """Make (or find) every interval's stacks and check that they can be trained on; returns the classes."""
    from pipeline.prepare.run import PrepareError, PrepareInterrupted, run_prepare
    from pipeline.train.data import DataError, read_run_data

    classes = {}
    for k, config in plan.prepares.items():
        if plan.spec.prepare:
            try:
                result = run_prepare(config)
            except PrepareInterrupted as exc:
                raise GridInterrupted(f"prepare interval {k}: {exc}") from None
            except PrepareError as exc:
                raise GridError(f"prepare interval {k}: {exc}") from None
            report = result.report
            log.info(f"stacks for interval {k}: {report['stacks_total']} in {config.out} "
                     f"({report['processed_this_run']} clips read, {report['reused_from_earlier_runs']} reused)")
        try:
            data = read_run_data(config.out)
        except DataError as exc:
            raise GridError(f"interval {k}: {exc}") from None
        if data.channels != plan.stacks[k].channels:
            raise GridError(f"{config.out} holds {data.channels}-channel stacks, but interval {k} with --sequence-"
                            f"length {plan.stacks[k].sequence_length} gives {plan.stacks[k].channels}: prepare them "
                            "again with the grid's settings (drop --no-prepare)")
        if not data.rows.get("val"):
            raise GridError(f"{config.out} has no val stacks: prepare with --val-fraction > 0 or --val-ids")
        classes[k] = data.classes
    return classes


def _for_backend(config: TrainConfig, backend: str) -> TrainConfig:
    """Ray workers may run elsewhere (and in another folder): every path is made absolute."""
    if backend != "ray":
        return config
    fix = {k: Path(getattr(config, k)).resolve() for k in ("data", "runs_dir", "weights", "init")
           if getattr(config, k) is not None}
    return dataclasses.replace(config, **fix)


def run_grid(spec: GridSpec) -> GridResult:
    """Check, prepare, train every cell that is not finished, measure latency, write the results."""
    from pipeline.grid import backends as grid_backends
    from pipeline.grid import results as grid_results

    plan = plan_grid(spec)
    check_source(plan)
    check_existing(plan)
    if spec.backend == "ray":
        grid_backends.require_ray()
        log.info(grid_backends.stacks_note(spec))
    spec.out.mkdir(parents=True, exist_ok=True)
    from stacks.atomic import atomic_write_text

    atomic_write_text(spec.out / SPEC_FILE, json.dumps({**spec.to_dict(), "cells": [c.id for c in plan.cells]},
                                                       indent=2) + "\n")
    classes = _prepare_all(plan)
    stacks = {k: stacks_identity(config.out) for k, config in plan.prepares.items()}
    check_existing(plan, stacks)  # again, on the stacks as prepared: other clips, or a `prepare` in between
    modes = {cell.id: cell_mode(cell, spec.force, stacks[cell.interval]) for cell in plan.cells}
    reused = [cid for cid, mode in modes.items() if mode == "skip"]
    todo = [cell for cell in plan.cells if modes[cell.id] != "skip"]
    log.info(f"grid {spec.name}: {len(plan.cells)} cells, {len(reused)} finished earlier, {len(todo)} to train "
             f"({spec.backend}{'' if spec.backend == 'ray' else f', {spec.jobs or 1} job(s)'})")
    outcomes: dict[str, CellOutcome] = {}
    if todo:
        in_process = spec.backend == "local" and (spec.jobs or 1) == 1
        tasks = [CellTask(cell.id, _for_backend(dataclasses.replace(cell.config, progress=spec.progress and in_process),
                                                spec.backend), modes[cell.id])
                 for cell in todo]
        outcomes = grid_backends.run_tasks(run_cell, tasks, spec, progress=spec.progress)
    interrupted = [o for o in outcomes.values() if o.status == "interrupted"]
    failed = {cid: o.error for cid, o in outcomes.items() if o.status != "done"}
    trained = [cid for cid, o in outcomes.items() if o.status == "done"]
    if interrupted:
        raise GridInterrupted(f"interrupted in cell {interrupted[0].cell}; {len(reused) + len(trained)} finished "
                              f"cells are kept in {spec.out}: run the same command again to continue")
    device = spec.train.get("device", "auto")
    grid_results.measure_latencies(plan, spec.latency_clips, device, progress=spec.progress)
    markdown = grid_results.write_results(plan, classes)
    for cell in plan.cells:
        record = read_cell_record(cell.run_dir)
        if record.get("status") not in (None, "done") and cell.id not in failed:
            failed[cell.id] = record.get("error", "")
    return GridResult(spec.out, plan, trained, reused, failed, markdown)


def threads_per_job(jobs: int) -> int:
    """Torch threads per process so that ``jobs`` processes share the cores without oversubscribing."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))
