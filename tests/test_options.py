"""Options generated from a settings dataclass: one definition gives the flag, its type, default and help."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from pipeline.journal.settings import JournalSettings
from pipeline.options import add_options, settings_from
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
    assert JournalSettings(host="127.0.0.2").loopback and not JournalSettings(host="0.0.0.0").loopback
