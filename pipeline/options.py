"""Command-line options generated from a settings dataclass, so each option is written once.

A field's name becomes ``--the-name``, its type the parser's type, its default the default, and
``metadata["help"]`` the help text. ``bool`` fields become ``--flag/--no-flag``; ``X | None`` fields
take an X and default to None. The stage reads the settings object back with ``settings_from``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _value_type(hint: Any) -> Any:
    """The type argparse converts to: X for ``X | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported option type {hint!r}")
        return args[0]
    return hint


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, settings: type) -> None:
    """One ``--option`` per field of the dataclass ``settings``."""
    hints = typing.get_type_hints(settings)
    for f in dataclasses.fields(settings):
        if not f.init or f.metadata.get("cli") is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _value_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        elif typing.get_origin(kind) is typing.Literal:
            choices = typing.get_args(kind)
            parser.add_argument(flag, dest=f.name, type=type(choices[0]), choices=choices, default=default,
                                help=help_text)
        elif kind in (str, int, float, Path):
            parser.add_argument(flag, dest=f.name, type=kind, default=default, help=help_text,
                                metavar=f.metadata.get("metavar"))
        else:
            raise TypeError(f"{settings.__name__}.{f.name}: unsupported option type {kind!r}")


def settings_from(settings: type[T], args: argparse.Namespace) -> T:
    """The settings object from parsed arguments; the dataclass's own checks then run."""
    names = {f.name for f in dataclasses.fields(settings) if f.init and f.metadata.get("cli") is not False}
    return settings(**{name: getattr(args, name) for name in names})
