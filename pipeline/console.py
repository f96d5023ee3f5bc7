"""How every command reports an expected problem: one line on stderr and a non-zero exit code."""

from __future__ import annotations

import sys


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
