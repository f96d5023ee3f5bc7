"""Which frames of a clip are sampled: the ones shown at fixed moments, by presentation time.

A model's interval and sequence length are times (frames at the reference 30 fps, the rate its
training clips had). Picking frames by index would sample a 60 fps clip twice as densely as it was
trained and a variable-frame-rate clip unevenly; picking the frame shown at each moment samples
every clip alike, within one frame. On a 30 fps constant-rate clip the picks are exactly every
k-th frame, as before. The frame taken for a moment is the one a player shows then: the last frame
whose presentation time is not after it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

# Presentation times are fractions of a time base turned into floats; a frame this much before a
# sampled moment still counts as shown at it (far below any frame period: 4 ms at 240 fps).
TOLERANCE = 1e-3


def interval_grid(interval: int, reference_fps: float = 30.0) -> Iterator[float]:
    """Every ``interval`` reference frames from 0: the moments `predict` and `live` sample."""
    return (k * interval / reference_fps for k in itertools.count())


def sequence_grid(sequence_length: int, interval: int, reference_fps: float = 30.0) -> Iterator[float]:
    """The moments `prepare` samples: offsets 0, k, 2k, ... inside each consecutive sequence."""
    offsets = range(0, sequence_length, interval)
    return ((chunk * sequence_length + offset) / reference_fps for chunk in itertools.count() for offset in offsets)


def shown_at(items: Iterable[T], time_of: Callable[[T], float], moments: Iterable[float],
             period: Callable[[], float]) -> Iterator[tuple[T, float | None, float]]:
    """Pass every item (frame) through with the first sampled moment it is shown at (or None), and the
    time it is shown until.

    A frame is shown from its time until the next frame's (the last one for ``period()``), as a player
    shows it, so each item comes out once the next has arrived: one frame late. Where a clip skips
    (a variable-rate gap longer than an interval), one frame is shown at every moment the gap spans
    and is taken once, for the first.
    """
    pending = iter(moments)
    moment = next(pending, None)
    previous: T | None = None
    have_previous = False
    last = 0.0
    for item in items:
        time = time_of(item)
        if have_previous:
            shown = None
            while moment is not None and time > moment + TOLERANCE:  # the moment passed while previous showed
                shown = moment if shown is None else shown
                moment = next(pending, None)
            yield previous, shown, time  # type: ignore[misc]
        previous, have_previous, last = item, True, time
    if have_previous:
        shown = None
        end = last + period()
        while moment is not None and moment + TOLERANCE < end:
            shown = moment if shown is None else shown
            moment = next(pending, None)
        yield previous, shown, end  # type: ignore[misc]
