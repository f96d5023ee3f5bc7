"""`cli.py grid` on a tiny real grid: 2 intervals x 2 backbones, 1 epoch, 32 px, real clips of a real face.

The clips are conftest's ``dataset`` (the astronaut and its mirror image as two labels, plus bad files
that prepare must skip); sequences of 30 frames, so interval 5 gives 6 channels and interval 10 gives 3.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import shutil
import time
from pathlib import Path

import pytest
import torch

from pipeline.grid import (
    CELL_FILE,
    CellTask,
    GridError,
    plan_grid,
    read_grid_file,
    run_cell,
    spec_from_sources,
)
from pipeline.grid_commands import add_grid
from pipeline.grid_results import ACCURACY_HEADING, UAR_HEADING, table_section

BACKBONES = ["resnet18", "mobilenetv3_small"]
# One epoch that learns something (constant lr, linear head, no augmentation), so that rows have a best.
# --threads 1: the cells compute the same floats whether they run in this process, in joblib's or in Ray's.
TINY = ["--intervals", "5,10", "--backbones", ",".join(BACKBONES), "--epochs", "1", "--batch-size", "4",
        "--image-size", "32", "--size", "32", "--sequence-length", "30", "--min-length", "30", "--workers", "2",
        "--schedule", "constant", "--lr", "3e-3", "--head-hidden", "0", "--no-augment", "--threads", "1",
        "--latency-clips", "1", "--no-progress"]


def grid_cli(*argv: str) -> int:
    """`python cli.py grid ...` through the same parser definition cli.py uses."""
    parser = argparse.ArgumentParser(prog="cli.py")
    add_grid(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["grid", *map(str, argv)])
    return args.func(args)


@pytest.fixture(scope="module")
def places(dataset: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {"source": dataset["root"], "stacks": tmp_path_factory.mktemp("stacks"),
            "grids": tmp_path_factory.mktemp("grids")}


def run_tiny(places: dict[str, Path], name: str, *extra: str) -> tuple[int, float]:
    started = time.perf_counter()
    code = grid_cli(*TINY, "--source", places["source"], "--stacks-dir", places["stacks"], "--grids-dir",
                    places["grids"], "--name", name, *extra)
    return code, time.perf_counter() - started


def tables(out: Path) -> tuple[str, str]:
    text = (out / "results.md").read_text()
    return table_section(text, ACCURACY_HEADING), table_section(text, UAR_HEADING)


def cell_dirs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "runs").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def tiny(places: dict[str, Path]) -> Path:
    code, seconds = run_tiny(places, "tiny")
    print(f"tiny grid, --jobs 1: {seconds:.1f} s")
    assert code == 0
    return places["grids"] / "tiny"


# -- bad input: a clear error before anything runs ---------------------------------------------------


def test_typos_unknown_names_and_too_few_channels_fail_before_anything_runs(places, tmp_path, capsys) -> None:
    grids = tmp_path / "grids"
    base = ["--source", places["source"], "--stacks-dir", tmp_path / "stacks", "--grids-dir", grids]
    typo = tmp_path / "grid.toml"
    typo.write_text('[axes]\ninterval = [5, 10]\n[train]\nbatch_sise = 4\n')
    assert grid_cli("--config", typo, *base) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown option in [train] 'batch_sise'" in err and "did you mean 'batch_size'" in err
    assert "epochs" in err and "weight_decay" in err and len(err.splitlines()) == 1

    top = tmp_path / "top.yaml"
    top.write_text("nmae: x\n")
    assert grid_cli("--config", top, *base) == 2
    assert "unknown top-level key 'nmae'" in capsys.readouterr().err

    assert grid_cli(*base, "--backbones", "resnet18,resnet99") == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'resnet99'" in err and "mobilenetv3_small" in err and "efficientnetv2_m" in err

    assert grid_cli(*base, "--intervals", "5,30", "--sequence-length", "30", "--min-length", "30") == 2
    err = capsys.readouterr().err
    assert "--intervals 30 gives 1 channel with --sequence-length 30" in err and "at least 2 channels" in err

    assert grid_cli(*base, "--optimizer", "adamw,rmsprop") == 2
    assert "--optimizer must be one of adamw, adam, sgd" in capsys.readouterr().err
    assert grid_cli(*base, "--size", "32,64") == 2
    assert "only --intervals varies the stacks" in capsys.readouterr().err
    assert not grids.exists() and not (tmp_path / "stacks").exists()  # nothing ran, nothing was written


def test_grid_file_axes_and_flags_make_the_cells(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text('name = "sweep"\nsource = "clips"\n[axes]\nintervals = [5, 15]\nbackbones = ["resnet18"]\n'
                    'lr = [1e-3, 3e-4]\nno_augment = [false, true]\n[train]\nepochs = 3\n[prepare]\nsize = 64\n')
    (tmp_path / "clips").mkdir()
    spec = spec_from_sources(read_grid_file(path), {"epochs": "2", "source": tmp_path / "clips"})
    plan = plan_grid(spec)
    assert list(spec.axes) == ["interval", "backbone", "lr", "no_augment"]
    assert len(plan.cells) == 2 * 1 * 2 * 2
    assert plan.cells[0].id == "i5_resnet18_lr=0.001_no-augment=false"
    first, last = plan.cells[0].config, plan.cells[-1].config
    assert first.epochs == 2  # the flag overrides the file
    assert first.augment.enabled and not last.augment.enabled and last.lr == 3e-4
    assert {c.channels for c in plan.cells} == {18, 6} and plan.stacks[15].size == 64
    assert first.run_dir == Path("grids/sweep/runs") / plan.cells[0].id

    yaml_path = tmp_path / "grid.yaml"
    yaml_path.write_text("axes:\n  backbone: [resnet18, mobilenetv3_small]\n  interval: [10]\n")
    assert [c.id for c in plan_grid(spec_from_sources(read_grid_file(yaml_path), {"source": tmp_path / "clips"}))
            .cells] == ["i10_resnet18", "i10_mobilenetv3_small"]
    with pytest.raises(GridError, match="put it under \\[axes\\]"):
        spec_from_sources({"train": {"epochs": [1, 2]}}, {})


def test_a_worker_that_cannot_read_the_stacks_fails_its_cell_clearly(tmp_path: Path) -> None:
    spec = spec_from_sources(None, {"interval": "5", "backbone": "resnet18", "source": tmp_path})
    config = dataclasses.replace(plan_grid(spec).cells[0].config, data=tmp_path / "elsewhere",
                                 runs_dir=tmp_path / "runs")
    outcome = run_cell(CellTask("i5_resnet18", config, "fresh"))
    assert outcome.status == "failed"
    assert f"cannot read {tmp_path / 'elsewhere' / 'manifest.csv'}" in outcome.error
    assert "same absolute path" in outcome.error
    assert (tmp_path / "runs" / "i5_resnet18" / CELL_FILE).is_file()


# -- the tiny grid ------------------------------------------------------------------------------------


def test_tiny_grid_makes_every_cell_the_tables_the_csv_and_the_figures(tiny: Path) -> None:
    assert [p.name for p in cell_dirs(tiny)] == sorted(f"i{k}_{b}" for k in (5, 10) for b in BACKBONES)
    for run in cell_dirs(tiny):
        for name in ("best.pt", "last.pt", "metrics.json", "history.csv", CELL_FILE):
            assert (run / name).is_file(), run / name
    accuracy, uar = tables(tiny)
    lines = accuracy.splitlines()
    assert lines[0].startswith("| interval → channels | resnet18 (") and "| mobilenetv3_small (" in lines[0]
    assert " M) |" in lines[0]
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["5 → 6", "10 → 3"]
    with open(tiny / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    for row in rows:
        assert {"accuracy", "uar", "macro_f1", "war", "parameters", "train_seconds", "latency_ms_per_clip",
                "recall_happy", "f1_sad"} <= set(row)
        assert float(row["train_seconds"]) > 0 and float(row["latency_ms_per_clip"]) > 0
        assert int(row["parameters"]) > 100_000 and row["channels"] in ("6", "3")
    by_row: dict[str, list[float]] = {}
    for row in rows:
        by_row.setdefault(row["interval"], []).append(float(row["accuracy"]))
    for line, interval in zip(lines[2:], ("5", "10")):  # the best of each row in bold, and only the best
        cells = [c.strip() for c in line.split("|")[2:-1]]
        best = max(by_row[interval])
        for cell, value in zip(cells, [float(r["accuracy"]) for r in rows if r["interval"] == interval]):
            assert cell == (f"**{100 * value:.1f}**" if value == best else f"{100 * value:.1f}")
    assert "/" in uar.splitlines()[2] and "**" in uar
    for name in ("confusion_grid.png", "curves_grid.png"):
        assert (tiny / name).stat().st_size > 10_000


def test_a_cell_is_an_ordinary_run_folder(tiny: Path) -> None:
    from pipeline.evaluate import evaluate_run

    metrics = evaluate_run(tiny / "runs" / "i10_resnet18", "val", progress=False)
    with open(tiny / "results.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["cell"] == "i10_resnet18")
    assert metrics["accuracy"] == pytest.approx(float(row["accuracy"]))


def test_rerun_trains_nothing(tiny: Path, places: dict[str, Path]) -> None:
    stamps = {p: p.stat().st_mtime_ns for run in cell_dirs(tiny) for p in (run / "best.pt", run / "last.pt")}
    before = tables(tiny)
    code, seconds = run_tiny(places, "tiny")
    assert code == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert tables(tiny) == before
    print(f"rerun of the finished grid: {seconds:.1f} s")


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "time_seconds"} for row in csv.DictReader(fh)]


def test_more_epochs_continue_force_restarts_and_other_settings_are_refused(tiny, places, capsys) -> None:
    out = places["grids"] / "tiny_more"
    shutil.copytree(tiny, out)
    code, _ = run_tiny(places, "tiny_more", "--lr", "1e-3")
    assert code == 2
    err = capsys.readouterr().err
    assert "already holds cells trained with other settings" in err and "--lr" in err and "--force" in err

    first = {run.name: _history(run) for run in cell_dirs(out)}
    code, _ = run_tiny(places, "tiny_more", "--epochs", "2")  # an interrupted cell continues the same way
    assert code == 0
    for run in cell_dirs(out):
        history = _history(run)
        assert len(history) == 2 and history[:1] == first[run.name]

    cell = out / "runs" / "i5_resnet18"
    resumed, stamp = _history(cell), (cell / "best.pt").stat().st_mtime_ns
    (cell / "history.csv").unlink()
    code, _ = run_tiny(places, "tiny_more", "--epochs", "2", "--intervals", "5", "--backbones", "resnet18",
                       "--force")
    assert code == 0
    assert (cell / "best.pt").stat().st_mtime_ns != stamp
    assert _history(cell) == resumed  # a straight 2-epoch run computes what 1 epoch + 1 resumed epoch did


def test_jobs_2_gives_the_same_table(tiny: Path, places: dict[str, Path]) -> None:
    code, seconds = run_tiny(places, "tiny_jobs2", "--jobs", "2")
    assert code == 0
    print(f"tiny grid, --jobs 2: {seconds:.1f} s")
    assert tables(places["grids"] / "tiny_jobs2") == tables(tiny)


def test_a_failing_cell_is_recorded_and_the_others_finish(places: dict[str, Path], tmp_path: Path, capsys) -> None:
    import timm

    weights = tmp_path / "resnet18.pth"  # resnet18 weights: they fit the resnet18 cells only
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), weights)
    code, _ = run_tiny(places, "broken", "--intervals", "5", "--weights", weights)
    assert code == 1
    assert "1 of 2 cells failed" in capsys.readouterr().err
    out = places["grids"] / "broken"
    with open(out / "results.csv", newline="") as fh:
        rows = {r["cell"]: r for r in csv.DictReader(fh)}
    assert rows["i5_resnet18"]["status"] == "done"
    assert rows["i5_mobilenetv3_small"]["status"] == "failed"
    assert "does not fit this backbone" in rows["i5_mobilenetv3_small"]["error"]
    text = (out / "results.md").read_text()
    assert "| 5 → 6 | **" in text and "| failed |" in text
    assert "`i5_mobilenetv3_small`: failed: --weights" in text


try:
    import ray
except ImportError:  # an optional extra
    ray = None


@pytest.mark.skipif(ray is None, reason="Ray is not installed (an optional extra): pip install -r requirements-ray.txt")
def test_local_ray_gives_the_same_table(tiny: Path, places: dict[str, Path]) -> None:
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        code, _ = run_tiny(places, "tiny_ray", "--backend", "ray")
    finally:
        ray.shutdown()
    print(f"tiny grid on a local Ray runtime (2 CPUs), ray.init included: {time.perf_counter() - started:.1f} s")
    assert code == 0
    assert tables(places["grids"] / "tiny_ray") == tables(tiny)
