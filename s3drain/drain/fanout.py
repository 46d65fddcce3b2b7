"""How many streams (ranged GETs) to give one large object, learned from the run's own rate.

A fixed rule cannot be right everywhere: on S3 over a real network one connection carries
50-100 MB/s and a lone large object wants many streams; on a local server that reads the whole
object for every ranged GET (moto), each extra stream costs more than it brings. So the run
measures. Every large object starts with as many streams as the run has learned to use (one
at first); every `window` seconds the aggregate rate of the whole run is compared with the
window before:

- while streams are steady and an object could take one more (an idle connection, a range of
  at least twice --part-size left), the level is raised: doubled while each step at least
  halves the time, by one after that;
- a raised level is kept only when the rate rose by at least `gain`; otherwise it falls back
  to the last level that paid, and no higher level is tried for `cooldown` windows.

What is learned carries over to the next objects of the run. `--max-streams` caps the level
for operators who know their link; 1 never splits an object.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

WINDOW_SECONDS = 1.0
MIN_WINDOW_BYTES = 4 * 1024 * 1024  # a window too quiet to measure anything is extended
GAIN = 0.20  # a raised level must bring at least this much more (more than the noise)
DOUBLING_GAIN = 0.50  # ...and this much to keep doubling
COOLDOWN_WINDOWS = 8


class StreamPolicy(Protocol):
    """What the fetcher asks: how many streams an object may have now."""

    def moved(self, nbytes: int) -> None: ...

    def wanted(self, *, can_grow: bool) -> int: ...


class FanOut:
    def __init__(
        self,
        max_streams: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        window: float = WINDOW_SECONDS,
        min_window_bytes: int = MIN_WINDOW_BYTES,
    ) -> None:
        self.max_streams = max(1, max_streams)
        self.level = 1
        self._clock = clock
        self._window = window
        self._min_bytes = min_window_bytes
        self._lock = threading.Lock()
        self._moved = 0
        self._window_start: float | None = None  # set when bytes first flow
        self._window_bytes_at_start = 0
        # The window after a change of level (and the first one) only lets the streams settle:
        # a new stream's first bytes come late, a run's first window holds its start-up.
        self._settling = True
        self._base_rate: float | None = None  # the rate at the last level that paid
        self._trial_from: int | None = None  # the level a running trial would fall back to
        self._cooldown = 0
        self._doubling = True
        self._growth_wanted = False
        self.history: list[tuple[int, float]] = []  # (level, rate) per window, for tests

    def moved(self, nbytes: int) -> None:
        with self._lock:
            self._moved += nbytes

    def wanted(self, *, can_grow: bool) -> int:
        """The streams an object should have now. `can_grow`: the caller could add one."""
        with self._lock:
            self._growth_wanted |= can_grow
            now = self._clock()
            if self._window_start is None:
                if self._moved == 0:
                    return self.level
                self._window_start, self._window_bytes_at_start = now, self._moved
            elapsed = now - self._window_start
            moved = self._moved - self._window_bytes_at_start
            if elapsed >= self._window and (
                moved >= self._min_bytes or elapsed >= 4 * self._window
            ):
                level = self.level
                if self._settling:
                    self._settling = False
                else:
                    self._judge(moved / elapsed)
                self._settling = self.level != level
                self._window_start = now
                self._window_bytes_at_start = self._moved
                self._growth_wanted = False
            return self.level

    def _judge(self, rate: float) -> None:
        self.history.append((self.level, rate))
        if self._trial_from is not None:
            base = self._base_rate or 0.0
            trial_from = self._trial_from
            self._trial_from = None
            if rate < base * (1 + GAIN):
                self.level = trial_from  # fewer next time
                self._cooldown = COOLDOWN_WINDOWS
                return
            # It paid: this window is the new base, and the next step is tried at once.
            self._doubling = self._doubling and rate >= base * (1 + DOUBLING_GAIN)
        self._base_rate = rate
        if self._cooldown:
            self._cooldown -= 1
            return
        if self._growth_wanted and self.level < self.max_streams:
            self._trial_from = self.level
            step = self.level if self._doubling else 1
            self.level = min(self.max_streams, self.level + step)


class FixedStreams:
    """Exactly `n` streams per large object whenever connections allow: no measuring."""

    def __init__(self, n: int) -> None:
        self.n = n

    def moved(self, nbytes: int) -> None:
        return None

    def wanted(self, *, can_grow: bool) -> int:
        return self.n
