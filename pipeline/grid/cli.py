"""`cli.py grid`: argument parsing and output only (the work is in pipeline.grid.run).

Every `train` option is accepted with the same name, type and choices as in `cli.py train` (both come from
``TrainConfig``'s fields); a comma-separated list of values makes it an axis of the grid.
`prepare`'s options set how the clips become stacks, shared by every cell (its --seed is --split-seed).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.commands import Subcommands, add_command
from pipeline.console import fail, run_stage

if TYPE_CHECKING:
    from pipeline.grid.run import GridResult

EPILOG = """\
examples:
  python cli.py grid --source data/clips                       the seed's 3 intervals x 3 backbones
  python cli.py grid --intervals 5,10 --backbones resnet18,mobilenetv3_small --epochs 5 --jobs 2
  python cli.py grid --lr 1e-3,3e-4 --no-augment false,true    any train option with several values is an axis
  python cli.py grid --config grid.toml --name lr_sweep        axes and shared options from a file
  python cli.py grid --backend ray --address auto              cells as Ray tasks (pip install -r requirements-ray.txt)

grid file (TOML, or YAML where PyYAML is installed); flags override it:
  name = "seed"
  source = "data/clips"          # or: no_prepare = true, with stacks in stacks_dir/interval_<k>
  [axes]                        # a list of values per axis
  interval = [5, 10, 15]
  backbone = ["mobilenetv3_large", "efficientnetv2_s", "efficientnetv2_m"]
  lr = [1e-3, 3e-4]
  [train]                       # shared by every cell: any `cli.py train` option
  epochs = 30
  batch_size = 16
  [prepare]                     # how clips become stacks: any `cli.py prepare` option
  sequence_length = 90
  val_fraction = 0.2

outputs in grids/<name>/: results.md (accuracy table, UAR / macro-F1 table, time and latency),
results.csv (every metric per cell), confusion_grid.png, curves_grid.png, and runs/<cell>/ (ordinary
run folders: `cli.py evaluate grids/<name>/runs/<cell>` works). Rerunning trains only unfinished cells.
"""


def add_grid(sub: Subcommands) -> None:
    from pipeline.grid.run import DEFAULT_BACKBONES, options

    p = add_command(
        sub, "grid", func=cmd_grid, epilog=EPILOG, width=34, show_defaults=False,
        help="train every interval x backbone (x any option) cell and tabulate the results",
        description=(
            "Prepare each interval's stacks once (prepare's cache is reused), train one run per cell with the "
            "same seed and split, and write grids/<name>/results.md (rows: interval -> channels, columns: "
            "backbone with parameters, validation accuracy, best per row in bold; plus UAR and macro-F1), "
            "results.csv, confusion_grid.png and curves_grid.png. Finished cells are not trained again; an "
            "interrupted grid continues; a failing cell is recorded and the others go on. Everything is "
            "checked before anything runs."),
    )
    s = argparse.SUPPRESS  # options not given stay unset, so a grid file's values are not overridden
    g = p.add_argument_group("grid")
    g.add_argument("--config", type=Path, default=None, help="grid file (.toml, .yaml): axes and shared options")
    g.add_argument("--name", default=s, help="results go to <grids-dir>/<name>/ (default: grid)")
    g.add_argument("--grids-dir", type=Path, default=s, help="where grid folders go (default: grids)")
    g.add_argument("--jobs", type=int, default=s,
                   help="local: cells trained in parallel processes, cores shared among them (default: 1); "
                   "ray: cells in flight at once (default: all)")
    g.add_argument("--backend", choices=["local", "ray"], default=s, help="local (joblib) or a Ray cluster "
                   "(default: local)")
    g.add_argument("--address", default=s, help="ray: cluster address (default: RAY_ADDRESS, else a local runtime)")
    g.add_argument("--force", action="store_true", default=s, help="train every cell again from scratch")
    g.add_argument("--latency-clips", type=int, default=s,
                   help="val clips `predict` is timed on per cell, on this machine (0: no timing) (default: 3)")
    g.add_argument("--dry-run", action="store_true", help="check everything and list the cells, train nothing")
    g.add_argument("--no-progress", action="store_true", default=s, help="no progress bars")

    opts = options()
    g = p.add_argument_group("axes (comma-separated values; any training option below can be an axis too)")
    g.add_argument("--intervals", "--interval", dest="interval", metavar="K[,K...]", default=s,
                   help=f"{opts['interval'].help} (default: 5,10,15)")
    g.add_argument("--backbones", "--backbone", dest="backbone", metavar="NAME[,NAME...]", default=s,
                   help=f"see `python cli.py models` (default: {','.join(DEFAULT_BACKBONES)})")

    g = p.add_argument_group("stacks (`prepare` options, shared by every cell)")
    g.add_argument("--source", type=Path, default=s, help="folder of clips (default: data/clips)")
    g.add_argument("--stacks-dir", type=Path, default=s,
                   help="interval k's stacks go to <stacks-dir>/interval_<k>; with --backend ray it must be "
                   "at the same path on every node (default: data/stacks)")
    g.add_argument("--no-prepare", action="store_true", default=s,
                   help="use the stacks already in <stacks-dir>/interval_<k> (no clips needed)")
    groups: dict[str, Any] = {}
    for opt in opts.values():
        if opt.name in ("interval", "backbone"):
            continue
        if opt.section == "prepare":
            group = g
        else:
            title = f"training, {opt.group}"
            group = groups.get(title) or groups.setdefault(title, p.add_argument_group(title))
        default = f" (default: {opt.default_text})" if opt.default_text else ""
        if opt.switch:
            metavar = "BOOL[,BOOL]" if opt.section == "train" else None
            if opt.section == "train":
                group.add_argument(opt.flag, dest=opt.name, nargs="?", const="true", metavar=metavar, default=s,
                                   help=f"{opt.help}; alone means true, false,true makes it an axis")
            else:
                group.add_argument(opt.flag, dest=opt.name, action="store_const", const="true", default=s,
                                   help=opt.help)
        else:
            if opt.choices:
                metavar = "{" + ",".join(map(str, opt.choices)) + "}" + ("[,...]" if opt.section == "train" else "")
            else:
                metavar = opt.name.upper() + ("[,...]" if opt.section == "train" else "")
            group.add_argument(opt.flag, dest=opt.name, metavar=metavar, default=s, help=f"{opt.help}{default}")


def _flags(args: argparse.Namespace) -> dict:
    flags = {}
    for key, value in vars(args).items():
        if key in ("func", "command", "config", "dry_run"):
            continue
        if key == "no_progress":
            flags["progress"] = not value
        else:
            flags[key] = value
    return flags


def cmd_grid(args: argparse.Namespace) -> int:
    from pipeline.grid.run import (
        GridError,
        GridInterrupted,
        check_existing,
        check_source,
        plan_grid,
        read_grid_file,
        run_grid,
        spec_from_sources,
    )

    try:
        data = read_grid_file(args.config) if args.config else None
        spec = spec_from_sources(data, _flags(args), str(args.config) if args.config else "grid file")
        plan = plan_grid(spec)
        check_source(plan)
        check_existing(plan)
        if spec.backend == "ray":
            from pipeline.grid.backends import require_ray

            require_ray()
    except GridError as exc:
        return fail(str(exc), 2)
    except UnicodeDecodeError as exc:
        return fail(f"{args.config or 'grid'}: not UTF-8 text ({exc.reason})", 2)
    except OSError as exc:  # a grid file, a stack folder or a cell record that cannot be read
        where = f" {exc.filename}" if exc.filename else ""
        return fail(f"cannot read{where}: {exc.strerror or exc}", 2)
    if args.dry_run:
        from pipeline.grid.run import cell_mode

        print(f"grid {spec.name}: {len(plan.cells)} cells -> {spec.out}")
        for cell in plan.cells:
            mode = cell_mode(cell, spec.force)
            print(f"  {cell.id:<40} {cell.channels:>3} channels  stacks {cell.config.data}  "
                  f"{ {'skip': 'finished', 'fresh': 'to train'}.get(mode, mode)}")
        return 0
    return run_stage(lambda: run_grid(spec), _show_results, interrupted=GridInterrupted, failed=(GridError, OSError))


def _show_results(result: GridResult) -> int:
    """The two tables and what was trained; exit code 1 when a cell failed."""
    from pipeline.grid.results import ACCURACY_HEADING, UAR_HEADING, table_section

    print()
    for heading in (ACCURACY_HEADING, UAR_HEADING):
        print(heading.lstrip("# "))
        print(table_section(result.markdown, heading))
        print()
    print(f"{len(result.trained)} cell(s) trained, {len(result.reused)} finished earlier, {len(result.failed)} failed;"
          f" results in {result.out}")
    if result.failed:
        for cell, error in result.failed.items():
            print(f"  {cell}: {error}")
        return fail(f"{len(result.failed)} of {len(result.plan.cells)} cells failed (see {result.out / 'results.md'})")
    return 0
