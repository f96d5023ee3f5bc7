"""Command-line options generated from a settings dataclass, so each option is written once.

A field's name becomes ``--the-name``, its type the parser's type, its default the default, and
``metadata["help"]`` the help text (``option()`` writes that metadata). Nested settings dataclasses are
flattened into flags of their own (``--image-size`` for ``input.image_size``). ``bool`` fields become
``--flag/--no-flag``, or one switch where the metadata asks (``switch=True``, or a ``--no-x`` flag, which sets the
field to False); ``X | None`` fields take an X and default to None.

The same table of options reads a settings file (``values_from_file``), so a key in a TOML/YAML file means
what its flag means, with the same checks and the same "did you mean" for a typo. ``build`` makes the settings
object from the options' values: defaults < file < flags, then the computed defaults (``derive``).

Metadata keys a field may carry (all optional):
    help      the help text
    flag      the flag, when it is not --<field-name> (``--no-augment`` for ``enabled``)
    switch    a bool that is one flag without a value (store_true), not --x/--no-x
    cli       False: not an option (set by code, or saved only)
    group     the help group (nested settings pass theirs on to their fields)
    groups    (on a class: ``OPTION_GROUPS``) the order of the help groups
    parse     text -> value, for types argparse cannot convert (comma lists, label maps); the CLI stores the text
    cli_default  the CLI's default when it is not the field's (``os.cpu_count()`` workers; None for a derived one)
    derive    values -> the value, when the option was left at None (``--name`` from backbone and data)
    inputs    options that are not fields, given after this one: they only feed a ``derive`` (train's --interval)
    fields    on a nested settings field whose class is defined elsewhere: name -> metadata of the fields that
              are options, in their order (the others are not options)
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
GIVEN = "given_options"  # namespace attribute: the options typed on the command line (a file must not override them)
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class OptionError(ValueError):
    """A value or a name that is not an option's: one line that says which and what it takes."""


def option(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002 - the argparse word
           default_factory: Any = dataclasses.MISSING, **metadata: Any) -> Any:
    """A dataclass field that is also a command-line option (see the module's metadata keys)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"help": help, **metadata})


@dataclasses.dataclass(frozen=True)
class Option:
    """One flag: its name (argparse dest and file key), where its value goes, and how text becomes that value."""

    name: str
    flag: str
    path: tuple[str, ...] | None  # attribute path in the settings; None for an input that only feeds a derive
    kind: Any  # int, float, str, Path, bool or tuple / dict (with ``parse``)
    choices: tuple | None
    default: Any  # the typed value when the option is not given
    help: str
    group: str | None
    switch: bool = False  # one flag without a value
    invert: bool = False  # the switch sets the field to False (--no-augment)
    parse_text: Callable[[str], Any] | None = None
    derive: Callable[[dict], Any] | None = None
    section: str = ""  # for a caller that mixes several stages' options (the grid)

    @property
    def is_bool(self) -> bool:
        return self.kind is bool

    def convert(self, text: str) -> Any:
        """Command-line text -> the typed value (ValueError for text that is not one)."""
        if self.parse_text is not None:
            return self.parse_text(text)
        if self.is_bool:
            low = text.strip().lower()
            if low in _TRUE or low in _FALSE:
                return low in _TRUE
            raise ValueError(text)
        return self.kind(text)

    def parse(self, raw: Any, where: str = "") -> Any:
        """A value typed on the command line (text) or read from a file (a TOML/YAML scalar) -> the typed value."""
        label = f"{where}{self.flag}"
        if self.is_bool:
            if isinstance(raw, bool):
                return raw
            try:
                return self.convert(str(raw))
            except ValueError:
                raise OptionError(f"{label} takes true or false (got {raw!r})") from None
        if raw is None and self.default is None:
            return None
        if isinstance(raw, bool) or isinstance(raw, (list, dict)):
            raise OptionError(f"{label} takes a single {self.kind_text} value (got {raw!r})")
        if self.kind is float and isinstance(raw, int):
            raw = float(raw)
        if self.kind is int and isinstance(raw, float):
            raise OptionError(f"{label} takes {self.kind_text} (got {raw!r})")
        try:
            value = self.convert(str(raw).strip())
        except (TypeError, ValueError) as exc:
            detail = str(exc) if self.parse_text is not None and str(exc) else f"takes {self.kind_text} (got {raw!r})"
            raise OptionError(f"{label} {detail}" if detail.startswith("takes") else f"{label}: {detail}") from None
        if self.choices is not None and value not in self.choices:
            raise OptionError(f"{label} must be one of {', '.join(map(str, self.choices))} (got {raw!r})")
        return value

    @property
    def kind_text(self) -> str:
        return {int: "an integer", float: "a number", Path: "a path"}.get(self.kind, "a value")

    @property
    def default_text(self) -> str:
        """The default as help shows it ('' where there is nothing to show)."""
        value = self.default
        if value is None or value is False or value in ("", (), []) or value == {}:
            return ""
        if isinstance(value, (tuple, list)):
            return ",".join(map(str, value))
        return str(value)

    def to_field(self, value: Any) -> Any:
        """The option's value as the settings field holds it."""
        return (not value) if self.invert else value


def input_option(name: str, kind: type, default: Any, help: str, group: str | None = None) -> Option:  # noqa: A002
    """An option that is not a settings field: it only feeds a ``derive`` (declared in a field's ``inputs``)."""
    return Option(name, "--" + name.replace("_", "-"), None, kind, None, default, help, group)


def _value_type(hint: Any) -> tuple[Any, bool]:
    """(the type argparse converts to, whether None is allowed): X for ``X | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported option type {hint!r}")
        return args[0], True
    return hint, False


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


@functools.cache
def option_table(settings: type) -> tuple[Option, ...]:
    """Every option of the settings dataclass, nested settings flattened, in help order."""
    return tuple(_options(settings, (), None, None))


def _options(settings: type, prefix: tuple[str, ...], group: str | None,
             overlay: dict[str, dict] | None) -> Iterable[Option]:
    hints = typing.get_type_hints(settings)
    by_name = {f.name: f for f in dataclasses.fields(settings) if f.init}
    names = list(overlay) if overlay is not None else list(by_name)
    for name in names:
        f = by_name[name]
        meta = {**f.metadata, **(overlay or {}).get(name, {})}
        if meta.get("cli") is False:
            continue
        kind, optional = _value_type(hints[name])
        here = meta.get("group", group)
        if dataclasses.is_dataclass(kind):
            yield from _options(kind, (*prefix, name), here, meta.get("fields"))
            continue
        yield _option(settings, f, meta, kind, optional, (*prefix, name), here)
        for extra in meta.get("inputs", ()):
            yield dataclasses.replace(extra, group=extra.group or here)


def _option(settings: type, f: dataclasses.Field, meta: dict, kind: Any, optional: bool, path: tuple[str, ...],
            group: str | None) -> Option:
    flag = meta.get("flag", "--" + f.name.replace("_", "-"))
    name = flag.lstrip("-").replace("-", "_")
    default = meta["cli_default"] if "cli_default" in meta else _field_default(f)
    default = default() if callable(default) else default
    choices = None
    if typing.get_origin(kind) is typing.Literal:
        choices = typing.get_args(kind)
        kind = type(choices[0])
    switch = kind is bool and (bool(meta.get("switch")) or flag.startswith("--no-"))
    invert = switch and flag.startswith("--no-")
    if invert:
        default = not default
    parse = meta.get("parse")
    if parse is None and kind not in (str, int, float, Path, bool):
        raise TypeError(f"{settings.__name__}.{f.name}: option type {kind!r} needs metadata 'parse'")
    if optional and default is not None:
        raise TypeError(f"{settings.__name__}.{f.name}: an X | None option defaults to None")
    return Option(name, flag, path, kind, choices, default, meta.get("help", ""), group, switch, invert, parse,
                  meta.get("derive"))


# -- argparse --------------------------------------------------------------------------------------------


def _remember(namespace: argparse.Namespace, dest: str) -> None:
    given = set(getattr(namespace, GIVEN, ()))
    given.add(dest)
    setattr(namespace, GIVEN, given)


class _Store(argparse.Action):
    """argparse's store, remembering that the option was typed (so that a settings file does not override it)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        _remember(namespace, self.dest)


class _Switch(argparse.Action):
    """store_true that remembers that it was typed."""

    def __init__(self, option_strings: list[str], dest: str, default: Any = False, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True)
        _remember(namespace, self.dest)


class _Negatable(argparse.BooleanOptionalAction):
    """--x / --no-x that remembers that it was typed."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        _remember(namespace, self.dest)


def add_options(parser: argparse.ArgumentParser, settings: type, only: Iterable[str] | None = None) -> None:
    """One flag per option of ``settings`` (nested settings flattened), in help groups where the fields say;
    ``only``: just these options (another command that shares some, e.g. `evaluate --device`), ungrouped."""
    chosen = None if only is None else set(only)
    order = list(getattr(settings, "OPTION_GROUPS", ())) if chosen is None else []
    groups: dict[str, Any] = {title: parser.add_argument_group(title) for title in order}
    rank = {title: i for i, title in enumerate(order)}  # usage lists the flags as help does: by group
    for opt in sorted(option_table(settings), key=lambda o: rank.get(o.group or "", -1)):
        if chosen is not None:
            if opt.name not in chosen:
                continue
            opt = dataclasses.replace(opt, group=None)
        where = parser if opt.group is None else groups.get(opt.group) or groups.setdefault(
            opt.group, parser.add_argument_group(opt.group))
        help_text = opt.help or None
        if opt.switch:
            where.add_argument(opt.flag, dest=opt.name, action=_Switch, default=False, help=help_text)
        elif opt.is_bool:
            where.add_argument(opt.flag, dest=opt.name, action=_Negatable, default=opt.default, help=help_text)
        elif opt.parse_text is not None:  # the text is kept; ``values_from_args`` converts it, with its own message
            where.add_argument(opt.flag, dest=opt.name, action=_Store, default=opt.default_text, help=help_text)
        else:
            where.add_argument(opt.flag, dest=opt.name, action=_Store, type=opt.kind, choices=opt.choices,
                               default=opt.default, help=help_text)


def given(args: argparse.Namespace) -> set[str]:
    """The names of the options typed on the command line."""
    return set(getattr(args, GIVEN, ()))


def values_from_args(settings: type, args: argparse.Namespace, only_given: bool = False) -> dict[str, Any]:
    """Option name -> typed value from parsed arguments (ValueError for text a ``parse`` refuses)."""
    typed = given(args)
    values = {}
    for opt in option_table(settings):
        if not hasattr(args, opt.name) or (only_given and opt.name not in typed):
            continue
        value = getattr(args, opt.name)
        if opt.parse_text is not None:  # argparse kept the text; left out, the typed default stands
            value = opt.convert(value) if opt.name in typed else opt.default
        values[opt.name] = value
    return values


def values_from_saved(settings: type, saved: dict) -> dict[str, Any]:
    """Option name -> value from a settings object saved as a dict (``asdict``, JSON): the inverse of ``build``
    for the options it holds (a run's config.json read back for ``train --resume``)."""
    values = {}
    for opt in option_table(settings):
        if not opt.path:
            continue
        value: Any = saved
        for key in opt.path:
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            if opt.invert and isinstance(value, bool):
                value = not value
            elif value is not None and opt.kind is Path:
                value = Path(value)
            elif isinstance(value, list):
                value = tuple(value)
            values[opt.name] = value
    return values


def defaults(settings: type) -> dict[str, Any]:
    """Option name -> its default (None for a derived one)."""
    return {opt.name: opt.default for opt in option_table(settings)}


def build(settings: type[T], values: dict[str, Any]) -> T:
    """The settings object from option values (defaults fill the rest, then ``derive``); its checks then run."""
    table = option_table(settings)
    merged = {**defaults(settings), **values}
    for opt in table:
        if opt.derive is not None and merged.get(opt.name) is None:
            merged[opt.name] = opt.derive(merged)
    return _construct(settings, (), {opt.path: opt.to_field(merged[opt.name]) for opt in table if opt.path})


def build_part(settings: type, part: str, values: dict[str, Any]) -> Any:
    """One nested settings object of ``settings`` (``build_part(PrepareConfig, "stack", ...)``), checked alone."""
    table = option_table(settings)
    merged = {**defaults(settings), **values}
    kind = _value_type(typing.get_type_hints(settings)[part])[0]
    return _construct(kind, (part,), {o.path: o.to_field(merged[o.name]) for o in table if o.path and
                                      o.path[0] == part})


def _construct(settings: type, prefix: tuple[str, ...], by_path: dict[tuple[str, ...], Any]) -> Any:
    hints = typing.get_type_hints(settings)
    kwargs = {}
    for f in dataclasses.fields(settings):
        path = (*prefix, f.name)
        if path in by_path:
            kwargs[f.name] = by_path[path]
        elif any(p[:len(path)] == path for p in by_path):
            kwargs[f.name] = _construct(_value_type(hints[f.name])[0], path, by_path)
    return settings(**kwargs)


def settings_from(settings: type[T], args: argparse.Namespace) -> T:
    """The settings object from parsed arguments; the dataclass's own checks then run."""
    return build(settings, values_from_args(settings, args))


# -- settings files ---------------------------------------------------------------------------------------


# Other tools' names for our options, which no spelling distance finds (--learning-rate is far from --lr).
OTHER_NAMES = {"learning_rate": "lr", "num_epochs": "epochs", "n_epochs": "epochs", "bs": "batch_size",
               "batch": "batch_size", "wd": "weight_decay", "model": "backbone", "arch": "backbone",
               "architecture": "backbone", "dataset": "data", "data_dir": "data", "output": "out", "output_dir": "out"}


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """' did you mean X?' for the closest valid name ('' when none is close): a flag (``--lrr``) among flags,
    or a settings file's key among keys."""
    valid = list(valid)
    prefix = "--" if name.startswith("--") else ""
    other = OTHER_NAMES.get(name.lstrip("-").replace("-", "_"))
    if other is not None:
        for candidate in (prefix + other.replace("_", "-"), prefix + other):
            if candidate in valid:
                return f"did you mean {candidate}?"
    close = difflib.get_close_matches(name, valid, n=1)
    return f"did you mean {close[0]}?" if close else ""


def values_from_file(table: Iterable[Option], data: dict, where: str) -> dict[str, Any]:
    """A settings file's table (key -> value; '-' or '_' in keys) -> option name -> typed value.

    ``where``: the file's name, put before every message (``run.toml: --lr takes a number (got 'fast')``)."""
    by_name = {opt.name: opt for opt in table}
    values = {}
    for key, raw in data.items():
        name = str(key).strip().replace("-", "_")
        if name not in by_name and isinstance(raw, dict):  # a [train] table, as a grid file has
            raise OptionError(f"{where}: [{key}] is a table, but this file takes its options as plain keys at the "
                              f"top: remove the [{key}] line (tables such as [train] belong in a grid file)")
        if name not in by_name:
            hint = did_you_mean(name, by_name)
            raise OptionError(f"{where}: unknown option {key!r}: "
                              + (hint or f"valid options are {', '.join(sorted(by_name))}"))
        values[name] = by_name[name].parse(raw, f"{where}: ")
    return values
