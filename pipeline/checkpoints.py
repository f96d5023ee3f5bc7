"""A checkpoint opened by a stage: the model code's own errors become that stage's one-line error.

Train, evaluate and export each read checkpoints; a damaged file or one from other code must end in the
same kind of message wherever it is met, so the translation is written once, here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from models.weights import WeightsError


@contextmanager
def checkpoint_errors(error: type[Exception]) -> Iterator[None]:
    """Inside: a checkpoint or weights file that cannot be used raises ``error`` with the model code's message."""
    try:
        yield
    except (CheckpointError, WeightsError) as exc:
        raise error(str(exc)) from exc


def read_checkpoint(path: Path, error: type[Exception]) -> dict:
    """``load_checkpoint``, failing with ``error``."""
    with checkpoint_errors(error):
        return load_checkpoint(path)


def rebuild_model(checkpoint: dict, error: type[Exception]) -> nn.Module:
    """The checkpoint's network; one this code cannot rebuild (another timm, a missing key) fails with ``error``."""
    try:
        return model_from_checkpoint(checkpoint)
    except (CheckpointError, WeightsError) as exc:
        raise error(str(exc)) from exc
    except (RuntimeError, ValueError, KeyError) as exc:
        versions = checkpoint.get("versions")
        raise error(f"{checkpoint.get('path', 'the checkpoint')} cannot be rebuilt with this code "
                    f"({type(exc).__name__}: {str(exc)[:200]}); it was saved with {versions}") from exc
