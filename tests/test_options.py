"""Options generated from a settings dataclass: one definition gives the flag, its type, default and help."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from pipeline.journal.settings import JournalSettings
from pipeline.options import add_options, input_option, option_table, settings_from
from pipeline.prepare.settings import PrepareConfig
from pipeline.train.cli import train_config
from pipeline.train.settings import TrainConfig
from tests.conftest import REPO


@dataclass(frozen=True)
class Example:
    name: str = field(default="x", metadata={"help": "a name"})
    count: int = 3
    ratio: float = 0.5
    folder: Path | None = None
    loud: bool = False
    mode: Literal["fast", "slow"] = "fast"
    internal: int = field(default=7, metadata={"cli": False})


def parse(*argv: str) -> Example:
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    return settings_from(Example, parser.parse_args(list(argv)))


def test_fields_become_typed_options_with_their_defaults() -> None:
    assert parse() == Example()
    got = parse("--name", "y", "--count", "5", "--ratio", "0.25", "--folder", "a/b", "--loud", "--mode", "slow")
    assert got == Example("y", 5, 0.25, Path("a/b"), True, "slow")
    assert parse("--no-loud").loud is False


def test_wrong_values_and_hidden_fields_are_refused() -> None:
    for argv in (["--count", "many"], ["--mode", "medium"], ["--internal", "1"]):
        with pytest.raises(SystemExit):
            parse(*argv)


def test_help_text_comes_from_the_field() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    assert "a name" in parser.format_help()


def test_journal_settings_errors_are_one_line() -> None:
    done = subprocess.run([sys.executable, str(REPO / "cli.py"), "journal", "--port", "70000", "--queue", "-1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--port" in done.stderr and "--queue" in done.stderr
    with pytest.raises(ValueError, match="--token"):
        JournalSettings(token="short")
    with pytest.raises(ValueError, match=r"--max-seconds must be at least --min-seconds \(5; got 4\)"):
        JournalSettings(min_seconds=5, max_seconds=4)
    with pytest.raises(ValueError, match="--shutdown-seconds must be >= 0"):
        JournalSettings(shutdown_seconds=-1)
    assert JournalSettings(host="127.0.0.2").loopback and not JournalSettings(host="0.0.0.0").loopback


# -- nested settings, switches, derived defaults, files: what train, prepare and grid are generated from ----------


@dataclass(frozen=True)
class Inner:
    enabled: bool = field(default=True, metadata={"help": "turn it off", "flag": "--no-inner"})
    rate: float = field(default=0.5, metadata={"help": "a rate"})


@dataclass(frozen=True)
class Outer:
    OPTION_GROUPS = ("first", "second")

    folder: Path = field(metadata={"help": "where", "group": "second", "cli_default": None,
                                   "derive": lambda v: Path(f"f{v['level']}"),
                                   "inputs": (input_option("level", int, 3, "picks the default --folder"),)})
    inner: Inner = field(default_factory=Inner, metadata={"group": "first"})
    tags: tuple[str, ...] = field(default=(), metadata={"help": "a,b", "parse": lambda t: tuple(t.split(","))})
    fast: bool = field(default=False, metadata={"help": "go fast", "switch": True, "group": "first"})


def test_nested_settings_become_flat_flags_in_their_groups_and_inputs_feed_derived_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, Outer)
    assert settings_from(Outer, parser.parse_args([])) == Outer(folder=Path("f3"))
    got = settings_from(Outer, parser.parse_args(["--level", "7", "--no-inner", "--rate", "0.25", "--tags", "x,y",
                                                  "--fast"]))
    assert got == Outer(folder=Path("f7"), inner=Inner(False, 0.25), tags=("x", "y"), fast=True)
    assert settings_from(Outer, parser.parse_args(["--folder", "here"])).folder == Path("here")
    text = parser.format_help().split("\n\n", 1)[1]  # below the usage line
    assert text.index("first:") < text.index("--no-inner") < text.index("second:") < text.index("--folder")
    assert "--fast" in text and "--no-fast" not in text and "--inner" not in text.replace("--no-inner", "")


def _fields_reached(settings: type, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every leaf field of a settings dataclass, by attribute path (the reference the table is checked against)."""
    import typing

    hints = typing.get_type_hints(settings)
    out = set()
    for f in dataclasses.fields(settings):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out |= _fields_reached(kind, (*prefix, f.name))
        else:
            out.add((*prefix, f.name))
    return out


@pytest.mark.parametrize("settings,hidden", [
    (TrainConfig, {("input", "mean"), ("input", "std"), ("input", "mirror")}),  # set by the weights, by export
    (PrepareConfig, set()),
])
def test_generated_flags_match_the_settings(settings: type, hidden: set) -> None:
    """Every field has a flag with help; typed defaults equal the dataclass's; choices are the Literal's."""
    table = option_table(settings)
    assert {o.path for o in table if o.path} == _fields_reached(settings) - hidden
    assert all(o.help for o in table), [o.flag for o in table if not o.help]
    parser = argparse.ArgumentParser()
    add_options(parser, settings)
    text = parser.format_help()
    for opt in table:
        assert opt.flag in text
        for choice in opt.choices or ():
            parser.parse_args([opt.flag, str(choice)])
        if opt.choices:
            with pytest.raises(SystemExit):
                parser.parse_args([opt.flag, "no-such-choice"])
    built = settings_from(settings, parser.parse_args([]))
    if settings is TrainConfig:
        assert built == TrainConfig(data=Path("data/stacks/interval_5"), name="efficientnetv2_s_interval_5")
        assert [o.flag for o in table if o.switch] == ["--pretrained", "--no-augment", "--resume", "--overwrite",
                                                      "--compile", "--no-progress"]
    else:
        assert built == PrepareConfig(source=Path("data/clips"), out=Path("data/stacks/interval_5"),
                                      workers=os.cpu_count() or 1)
        assert "--split-by" in text and "--seed" in text


def train(*argv: str) -> TrainConfig:
    import cli

    parser, _ = cli.build_parser()
    return train_config(parser.parse_args(["train", *map(str, argv)]))


FLAGS = ["--interval", "10", "--backbone", "resnet18", "--image-size", "48", "--no-augment", "--flip", "0.25",
         "--lr", "3e-4", "--schedule", "exponential", "--epochs", "7", "--label-smoothing", "0.1", "--no-progress",
         "--init", "runs/fer", "--runs-dir", "elsewhere"]
TOML = ('interval = 10\nbackbone = "resnet18"\nimage-size = 48\nno_augment = true\nflip = 0.25\nlr = 3e-4\n'
        'schedule = "exponential"\nepochs = 7\nlabel_smoothing = 0.1\nno_progress = true\ninit = "runs/fer"\n'
        'runs_dir = "elsewhere"\n')


def test_train_config_file_gives_the_same_settings_as_the_flags(tmp_path: Path) -> None:
    from_flags = train(*FLAGS)
    assert from_flags.data == Path("data/stacks/interval_10") and not from_flags.augment.enabled
    toml = tmp_path / "run.toml"
    toml.write_text(TOML)
    assert train("--config", toml) == from_flags
    yaml = tmp_path / "run.yaml"
    yaml.write_text(TOML.replace(" = ", ": "))
    assert train("--config", yaml) == from_flags


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(TOML)
    got = train("--config", toml, "--lr", "1e-3", "--epochs", "50", "--name", "mine")
    assert (got.lr, got.epochs, got.name) == (1e-3, 50, "mine")  # a flag at its default still overrides the file
    assert got.schedule == "exponential" and got.input.image_size == 48  # the rest comes from the file


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    import cli

    try:
        code = cli.main(list(map(str, argv)))
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err.strip()


def test_a_typo_says_did_you_mean_in_a_file_and_on_the_command_line(tmp_path: Path, capsys) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("lrr = 0.1\n")
    code, err = run_cli(capsys, "train", "--config", toml)
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{toml}: unknown option 'lrr': did you mean lr?" in err
    code, err = run_cli(capsys, "train", "--lrr", "0.1")
    assert code == 2 and "unknown option --lrr: did you mean --lr?" in err
    # another tool's name, and one line: the whole usage (25 lines) came first, with no pointer to --lr
    code, err = run_cli(capsys, "train", "--learning-rate", "0.1")
    assert code == 2 and err == "cli.py train: error: unknown option --learning-rate: did you mean --lr?"
    toml.write_text("learning_rate = 0.1\n")
    code, err = run_cli(capsys, "train", "--config", toml)
    assert code == 2 and "unknown option 'learning_rate': did you mean lr?" in err
    code, err = run_cli(capsys, "prepare", "--sequence-lenght", "30")
    assert code == 2 and "did you mean --sequence-length?" in err
    toml.write_text("[train]\nepochs = 2\n")  # a grid file's table: it said "did you mean pretrained?"
    code, err = run_cli(capsys, "train", "--config", toml)
    assert code == 2 and "[train] is a table, but this file takes its options as plain keys at the top" in err


@pytest.mark.parametrize("text,expected", [
    ('lr = "fast"\n', "run.toml: --lr takes a number (got 'fast')"),
    ("epochs = 2.5\n", "run.toml: --epochs takes an integer (got 2.5)"),
    ('optimizer = "rmsprop"\n', "run.toml: --optimizer must be one of adamw, adam, sgd"),
    ('no_augment = "maybe"\n', "run.toml: --no-augment takes true or false"),
    ("lr = -1\n", "(lr): --lr must be > 0"),
    ("lr = [1, 2\n", "is not valid TOML"),
])
def test_bad_values_in_a_file_are_one_line_with_the_file_and_key(tmp_path: Path, capsys, text: str,
                                                                   expected: str) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(text)
    code, err = run_cli(capsys, "train", "--config", toml)
    assert code == 2 and expected in err and str(toml) in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
