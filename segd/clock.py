"""The engine clock (SPEC section 3): never goes backwards.

``wall`` mode: the clock is the daemon's receive time, ``max(previous, wall)``.
``event`` mode: the clock is a watermark, the largest event time seen so far; it moves only
when events arrive. The clock is stamped on every log row at append, which is what makes
live processing and replay see the same times. It is shared by the commit thread and the
event loop's timer, hence the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Clock:
    """Monotonic engine clock. ``wall`` is always passed in: this class reads no time."""

    def __init__(self, mode: str, start: float = 0.0) -> None:
        if mode not in ("wall", "event"):
            raise ValueError(f"clock mode must be 'wall' or 'event', got {mode!r}")
        self.mode = mode
        self._value = start
        self._lock = threading.Lock()

    @property
    def value(self) -> float:
        """The current clock (the last value handed out)."""
        return self._value

    def now(self, wall: float) -> float:
        """Advance with wall time (wall mode only) and return the current clock."""
        with self._lock:
            if self.mode == "wall" and wall > self._value:
                self._value = wall
            return self._value

    @contextmanager
    def stamping(self) -> Iterator[Callable[[float | None, float], tuple[float, float]]]:
        """Stamp a whole group of events under one lock acquisition (the group commit's hot
        loop): ``with clock.stamping() as stamp: ts, clock = stamp(ts, wall)``.

        A missing ``ts`` becomes the receive time: ``wall`` in wall mode, the current
        watermark in event mode (so loading history without times never jumps to today).
        """
        with self._lock:
            yield self._stamp

    def _stamp(self, ts: float | None, wall: float) -> tuple[float, float]:
        if self.mode == "wall":
            if wall > self._value:
                self._value = wall
            return (wall if ts is None else ts), self._value
        if ts is None:
            return self._value, self._value
        if ts > self._value:
            self._value = ts
        return ts, self._value
