"""`cli.py grid` on a tiny real grid: 2 intervals x 2 backbones, 1 epoch, 32 px, real clips of a real face.

The clips are conftest's ``dataset`` (the astronaut and its mirror image as two labels, plus bad files
that prepare must skip); sequences of 30 frames, so interval 5 gives 6 channels and interval 10 gives 3.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from pipeline.grid import backends as grid_backends
from pipeline.grid.cli import _flags, add_grid
from pipeline.grid.results import ACCURACY_HEADING, COST_HEADING, UAR_HEADING, CellResult, markdown, table_section
from pipeline.grid.run import (
    CELL_FILE,
    CellOutcome,
    CellTask,
    GridError,
    GridSpec,
    cell_mode,
    plan_grid,
    read_cell_record,
    read_grid_file,
    run_cell,
    spec_from_sources,
    write_cell_record,
)

BACKBONES = ["resnet18", "mobilenetv3_small"]
# One epoch that learns something (constant lr, linear head, no augmentation), so that rows have a best.
# --threads 1: the cells compute the same floats whether they run in this process, in joblib's or in Ray's.
TINY = ["--intervals", "5,10", "--backbones", ",".join(BACKBONES), "--epochs", "1", "--batch-size", "4",
        "--image-size", "32", "--size", "32", "--sequence-length", "30", "--min-length", "30", "--workers", "2",
        "--schedule", "constant", "--lr", "3e-3", "--head-hidden", "0", "--no-augment", "--threads", "1",
        "--latency-clips", "1", "--no-progress"]


def grid_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cli.py")
    add_grid(parser.add_subparsers(dest="command"))
    return parser.parse_args(["grid", *map(str, argv)])


def grid_cli(*argv: str) -> int:
    """`python cli.py grid ...` through the same parser definition cli.py uses."""
    args = grid_args(*argv)
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
    threads = torch.get_num_threads()
    code, seconds = run_tiny(places, "tiny")
    print(f"tiny grid, --jobs 1: {seconds:.1f} s")
    assert code == 0
    assert torch.get_num_threads() == threads  # the cells' --threads 1 does not leak into this process
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
    empty = tmp_path / "empty"  # --dry-run said all was well; the grid then failed in prepare
    empty.mkdir()
    assert grid_cli(*base, "--source", empty, "--dry-run") == 2
    assert f"--source: source folder {empty} holds no videos or images" in capsys.readouterr().err
    (empty / "Angry_0001.mp4").write_bytes(b"")  # usable once labelled as prepare labels it
    assert grid_cli(*base, "--source", empty, "--labels", "happy", "--dry-run") == 2
    assert "holds no usable clips or images" in capsys.readouterr().err
    assert grid_cli(*base, "--source", empty, "--labels", "anger", "--label-map", "angry=anger", "--dry-run") == 0
    capsys.readouterr()
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


def test_a_grid_file_that_cannot_be_read_is_one_line(tmp_path: Path, capsys) -> None:
    latin = tmp_path / "grid.toml"
    latin.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    assert grid_cli("--config", latin, "--source", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert "is not UTF-8 text" in err and len(err.splitlines()) == 1
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    with pytest.raises(GridError, match="does not exist"):
        read_grid_file(folder)


def test_a_grid_file_typo_or_bad_value_names_the_file_and_the_closest_option(tmp_path: Path, capsys) -> None:
    path = tmp_path / "grid.toml"
    for text, expected in (
        ("[axes]\nlrr = [1e-3, 3e-4]\n", "unknown option in [axes] 'lrr' (did you mean 'lr'?)"),
        ("[prepare]\nsequence_lenght = 30\n", "(did you mean 'sequence_length'?)"),
        ('[train]\nepochs = "many"\n', "[train] --epochs takes an integer (got 'many')"),
        ('[prepare]\nlabel_map = "happy"\n', "[prepare] --label-map: --label-map item 'happy' is not FROM=TO"),
    ):
        path.write_text(text)
        assert grid_cli("--config", path, "--source", tmp_path) == 2
        err = capsys.readouterr().err.strip()
        assert f"{path}: " in err and expected in err and len(err.splitlines()) == 1, err


def test_a_corrupt_cell_record_is_reported_with_its_path_not_read_as_pending(tmp_path: Path, capsys) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "Happy_0001.mp4").write_bytes(b"")  # a source with a clip in it, never read here
    args = ["--source", tmp_path / "clips", "--grids-dir", tmp_path / "grids", "--intervals", "5",
            "--backbones", "resnet18"]
    cell = plan_grid(spec_from_sources(None, _flags(grid_args(*args)))).cells[0]
    cell.run_dir.mkdir(parents=True)
    record = cell.run_dir / CELL_FILE
    record.write_text('{"status": "do')  # cut short
    with pytest.raises(GridError, match="corrupt cell record"):
        cell_mode(cell, force=False)
    assert grid_cli(*args, "--dry-run") == 2
    err = capsys.readouterr().err
    assert str(record) in err and "corrupt cell record" in err and "--force" in err
    assert cell_mode(cell, force=True) == "force"  # --force trains it again without reading it
    record.write_text("[1, 2]")
    with pytest.raises(GridError, match="not a JSON object"):
        read_cell_record(cell.run_dir)


def test_the_tables_bold_exactly_the_best_of_each_row(tmp_path: Path) -> None:
    spec = spec_from_sources(None, {"interval": "5,10", "backbone": "resnet18,mobilenetv3_small,efficientnetv2_s",
                                    "source": tmp_path})
    plan = plan_grid(spec)
    made = {5: {"resnet18": 0.5, "mobilenetv3_small": 0.7, "efficientnetv2_s": 0.6},  # distinct values
            10: {"resnet18": 0.8, "mobilenetv3_small": 0.8, "efficientnetv2_s": None}}  # a tie and a failed cell
    params = {(5, "resnet18"): 10_200_000, (10, "resnet18"): 9_800_000}
    results = []
    for cell in plan.cells:
        acc = made[cell.interval][cell.backbone]
        if acc is None:
            results.append(CellResult(cell, "failed", {"error": "out of memory"}))
            continue
        record = {"parameters": params.get((cell.interval, cell.backbone), 2_500_000), "train_seconds": 12.0}
        metrics = {"accuracy": acc, "uar": acc - 0.1, "macro_f1": acc - 0.2, "samples": 10}
        results.append(CellResult(cell, "done", record, metrics))
    text = markdown(plan, results, {5: ["happy", "sad"], 10: ["happy", "sad"]})
    accuracy = table_section(text, ACCURACY_HEADING).splitlines()
    assert accuracy[0] == ("| interval → channels | resnet18 (9.8 M–10.2 M) | mobilenetv3_small (2.5 M) "
                           "| efficientnetv2_s (2.5 M) |")
    assert accuracy[2:] == ["| 5 → 18 | 50.0 | **70.0** | 60.0 |", "| 10 → 9 | **80.0** | **80.0** | failed |"]
    uar = table_section(text, UAR_HEADING).splitlines()
    assert uar[2:] == ["| 5 → 18 | 40.0 / 30.0 | **60.0 / 50.0** | 50.0 / 40.0 |",
                       "| 10 → 9 | **70.0 / 60.0** | **70.0 / 60.0** | failed |"]
    assert "**" not in table_section(text, COST_HEADING)
    assert "`i10_efficientnetv2_s`: failed: out of memory" in text


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
    from pipeline.train.evaluate import evaluate_run

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


def test_an_interrupted_cell_says_to_run_the_grid_again_and_that_continues_it(tiny, places, capsys, caplog) -> None:
    # The cell's record and the grid said "continue with the same command and --resume", which grid has not.
    from pipeline.train.loop import log as train_log

    class StopAfterEpoch1(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "epoch   1/" in record.getMessage():
                raise KeyboardInterrupt  # as Ctrl-C would, right after epoch 1 was saved

    one = ("--epochs", "2", "--intervals", "5", "--backbones", "resnet18")
    stop = StopAfterEpoch1()
    caplog.set_level(logging.INFO, logger="pipeline.train")  # the epoch lines are INFO records
    train_log.addHandler(stop)
    try:
        code, _ = run_tiny(places, "tiny_cut", *one)
    finally:
        train_log.removeHandler(stop)
    err = capsys.readouterr().err
    record = read_cell_record(places["grids"] / "tiny_cut" / "runs" / "i5_resnet18")
    assert code == 130 and "run the same command again to continue" in err and "--resume" not in err
    assert record["status"] == "interrupted" and "holds epoch 1" in record["error"]
    assert "--resume" not in record["error"]
    code, _ = run_tiny(places, "tiny_cut", *one)
    assert code == 0 and len(_history(places["grids"] / "tiny_cut" / "runs" / "i5_resnet18")) == 2


def test_other_stacks_are_refused_not_reported_as_these(tiny, places, capsys) -> None:
    code, _ = run_tiny(places, "tiny", "--size", "48")  # prepare would rebuild interval_<k> at 48 px
    assert code == 2
    err = capsys.readouterr().err
    assert "already holds cells trained with other settings" in err and "(--size)" in err and "--force" in err
    code, _ = run_tiny(places, "tiny", "--split-seed", "1")
    assert code == 2 and "(--split-seed)" in capsys.readouterr().err

    # A new grid on the same stack folders with other stack settings: they were rebuilt at 48 px without a word,
    # under the grid above and under any `prepare --interval 5` of the user's.
    manifest = (places["stacks"] / "interval_5" / "manifest.csv").read_bytes()
    code, _ = run_tiny(places, "tiny_48", "--size", "48")
    err = capsys.readouterr().err
    assert code == 2 and "holds stacks made with other settings (--size)" in err and "--stacks-dir" in err
    assert (places["stacks"] / "interval_5" / "manifest.csv").read_bytes() == manifest
    assert not (places["grids"] / "tiny_48").exists()

    out = places["grids"] / "tiny_stale"  # an interrupted cell does not continue on other stacks either
    shutil.copytree(tiny, out)
    cell = out / "runs" / "i5_resnet18"
    write_cell_record(cell, {**read_cell_record(cell), "status": "interrupted"})
    code, _ = run_tiny(places, "tiny_stale", "--val-fraction", "0.3")
    assert code == 2 and "i5_resnet18 (--val-fraction)" in capsys.readouterr().err

    manifest = places["stacks"] / "interval_5" / "manifest.csv"
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/best.pt")}
    assert run_tiny(places, "tiny_stale", "--no-prepare", "--intervals", "10")[0] == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # same stacks: nothing trained again
    original = manifest.read_bytes()
    try:  # `cli.py prepare` run by hand between two --no-prepare grids
        manifest.write_bytes(original + b"\n")
        code, _ = run_tiny(places, "tiny", "--no-prepare")
        assert code == 2
        err = capsys.readouterr().err
        assert f"i5_resnet18 (other stacks in {manifest.parent}: prepared again since)" in err
        failed = plan_grid(spec_from_sources(None, _flags(grid_args(
            *TINY, "--source", places["source"], "--stacks-dir", places["stacks"], "--grids-dir", places["grids"],
            "--name", "tiny_stale", "--intervals", "5", "--backbones", "resnet18"))))
        record = read_cell_record(cell)
        write_cell_record(cell, {**record, "status": "failed"})
        assert cell_mode(failed.cells[0], False) == "force"  # a failed cell starts again on the new stacks
        manifest.write_bytes(original)
        assert cell_mode(failed.cells[0], False) == "resume"
    finally:
        manifest.write_bytes(original)


def test_a_worker_that_dies_fails_only_its_own_cell(tmp_path: Path, capfd: pytest.CaptureFixture,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pipeline")
    spec = spec_from_sources(None, {"interval": "5", "backbone": "resnet18", "source": tmp_path})
    config = dataclasses.replace(plan_grid(spec).cells[0].config, runs_dir=tmp_path / "runs")
    names = ["a", "boom", "b", "c", "d"]
    tasks = [CellTask(n, dataclasses.replace(config, name=n), "fresh", threads=1) for n in names]

    def cell(task: CellTask) -> CellOutcome:  # nested: loky ships it by value to its workers
        if task.cell == "boom":
            time.sleep(0.5)
            os._exit(3)  # as if killed for memory, while "a" trains beside it
        time.sleep(1.0 if task.cell == "a" else 0.1)
        logging.getLogger("pipeline.grid.run").info(f"[{task.cell}] trained in process {os.getpid()}")
        task.config.run_dir.mkdir(parents=True, exist_ok=True)
        write_cell_record(task.config.run_dir, {"cell": task.cell, "status": "done"})
        return CellOutcome(task.cell, "done")

    started = time.perf_counter()
    outcomes = grid_backends.run_tasks(cell, tasks, GridSpec(name="crash", jobs=2), progress=False)
    print(f"5 cells on 2 loky workers, one killed: {time.perf_counter() - started:.1f} s")
    assert {n: o.status for n, o in outcomes.items()} == {"a": "done", "boom": "failed", "b": "done", "c": "done",
                                                          "d": "done"}
    assert "worker process died" in outcomes["boom"].error
    # The workers' progress lines reach the terminal (each worker sets up the console logging for itself) ...
    workers = capfd.readouterr().out
    assert all(f"[{n}] trained in process" in workers for n in names if n != "boom")
    # ... and the grid says which cell failed, and why, as it goes.
    assert any(m.startswith("[boom] failed: its worker process died") for m in caplog.messages)
    for n in names:
        assert read_cell_record(tmp_path / "runs" / n)["status"] == ("failed" if n == "boom" else "done")
    grid_backends._record_failure(tasks[0], CellOutcome("a", "failed", "too late"))  # never over a finished cell
    assert read_cell_record(tmp_path / "runs" / "a")["status"] == "done"


def test_jobs_2_gives_the_same_table(tiny: Path, places: dict[str, Path], capfd: pytest.CaptureFixture) -> None:
    code, seconds = run_tiny(places, "tiny_jobs2", "--jobs", "2")
    assert code == 0
    out = capfd.readouterr().out  # the cells' epoch lines, from the worker processes, each with its cell
    assert all(f"[i{k}_{b}] epoch   1/1 " in out for k in (5, 10) for b in BACKBONES), out
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
