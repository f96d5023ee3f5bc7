"""The house style of a `cli.py` subcommand: one helper makes each subparser, one formatter lays out its help,
and an unknown flag gets a "did you mean" instead of argparse's bare "unrecognized arguments"."""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Callable
from typing import Any, Protocol

from pipeline.options import did_you_mean


class Subcommands(Protocol):
    """What ``ArgumentParser.add_subparsers()`` returns, as the commands use it."""

    choices: Any

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the option help where there is one to show; text with line breaks of its own (an epilog of
    examples) kept as written, other text filled to the terminal."""

    show_defaults = True

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if (not self.show_defaults or action.default is None or action.default is False
                or action.default in ("", []) or "(default" in (action.help or "")):
            return action.help
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" not in text:
            return super()._fill_text(text, width, indent)
        lines = []
        for line in text.splitlines():  # a line too long for the terminal goes on 4 columns further in
            lead = indent + line[:len(line) - len(line.lstrip())]
            lines.append(textwrap.fill(line.strip(), width, initial_indent=lead, subsequent_indent=lead + "    ",
                                       break_on_hyphens=False, break_long_words=False)
                         if len(indent + line) > width else indent + line)
        return "\n".join(lines)


class _PlainHelpFormatter(HelpFormatter):
    show_defaults = False


def add_command(sub: Subcommands, name: str, *, help: str, description: str,  # noqa: A002
                func: Callable[[argparse.Namespace], int], epilog: str | None = None, width: int = 24,
                show_defaults: bool = True) -> argparse.ArgumentParser:
    """A subcommand's parser in the house style; ``width``: the column option help starts in.

    ``show_defaults=False``: the help texts say their defaults themselves (or have none worth saying)."""
    kind = HelpFormatter if show_defaults else _PlainHelpFormatter
    parser = sub.add_parser(name, help=help, description=description, epilog=epilog,
                            formatter_class=lambda prog: kind(prog, max_help_position=width))
    parser.set_defaults(func=func)
    return parser


def parse_command_line(parser: argparse.ArgumentParser, sub: Subcommands,
                       argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown flag is refused with the closest flag of its subcommand
    (``unknown option --lrr: did you mean --lr?``), exit code 2, as argparse's own errors."""
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    command = sub.choices.get(getattr(args, "command", None), parser)
    flag = next((item.split("=", 1)[0] for item in extra if item.startswith("--")), None)
    if flag is None:
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    flags = sorted(set(re.findall(r"(?<![\w-])--[a-z0-9][\w-]*", command.format_help())))
    hint = did_you_mean(flag, flags)
    # One line, as the other errors: argparse's error() printed the whole usage first (25 lines for train).
    command.exit(2, f"{command.prog}: error: unknown option {flag}"
                    + (f": {hint}\n" if hint else f" (see `{command.prog} --help`)\n"))
    raise AssertionError("unreachable")  # exit() exits
