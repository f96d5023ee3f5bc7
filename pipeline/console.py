"""How every command talks to its user.

- ``fail``: an expected problem is one line on stderr and a non-zero exit code.
- ``run_stage``: a stage's run, interrupted (130, what is done is kept) or failed (1), as one line each.
- ``setup_logging``: the stages report progress through ``logging`` (one logger per module); this sends the
  project's records to the terminal as the plain lines they always were, info on stdout and warnings on stderr,
  without breaking a tqdm progress bar that is on screen.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# The project's top-level packages: their info records are shown; other libraries' only from warnings on.
PROJECT_LOGGERS = ("pipeline", "stacks", "models", "scrapers")


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run_stage(stage: Callable[[], T], show: Callable[[T], int], *, interrupted: type[BaseException],
              failed: type[BaseException] | tuple[type[BaseException], ...]) -> int:
    """Run a stage and show its result (``show`` returns the exit code); the stage's own interruption and
    error become one line each, with exit code 130 (rerun to continue) and 1. An ``OSError`` listed in
    ``failed`` names the path that could not be written or read."""
    try:
        result = stage()
    except interrupted as exc:
        return fail(str(exc), 130)
    except failed as exc:
        if isinstance(exc, OSError):
            where = f" {exc.filename}" if exc.filename else ""
            return fail(f"cannot write or read{where}: {exc.strerror or exc}", 1)
        return fail(str(exc), 1)
    return show(result)


class ConsoleHandler(logging.Handler):
    """One plain line per record: below WARNING on stdout, WARNING and above on stderr (as the prints were).

    Written with ``tqdm.write``, so that a progress bar on screen is cleared and drawn again below the line;
    the stream is looked up at each record, so a redirected ``sys.stdout`` (tests, a notebook) is honoured."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(message)s"))
        self.addFilter(_ours_or_warning)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            tqdm.write(self.format(record), file=stream)
            stream.flush()  # lines from worker processes and from both streams stay in order
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def _ours_or_warning(record: logging.LogRecord) -> bool:
    """The project's records at any level shown; another library's only from WARNING (as Python's default)."""
    return record.levelno >= logging.WARNING or record.name.split(".", 1)[0] in PROJECT_LOGGERS


def setup_logging() -> ConsoleHandler:
    """Show the project's progress lines (INFO) and every warning on the terminal; returns the handler.

    Called once by `cli.py` (and in each grid worker process). Calling it again replaces the handler, so lines
    are never printed twice. The handler sits on the root logger and the project's loggers keep propagating,
    so pytest's ``caplog`` still sees every record."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(old)
    handler = ConsoleHandler()
    root.addHandler(handler)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    return handler
