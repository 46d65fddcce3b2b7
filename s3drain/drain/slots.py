"""How many GETs may stream at once: one per worker. A worker's own object holds one slot; a
large object's extra streams take only slots that are idle, so splitting never crowds out the
objects other workers are fetching (with every connection busy, more ranges would buy nothing
but requests)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class GetSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._taken = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def held(self, wanted: int) -> Iterator[int]:
        """Reserve up to `wanted` idle slots, at least one (this worker's own)."""
        with self._lock:
            granted = max(1, min(wanted, self.limit - self._taken))
            self._taken += granted
        try:
            yield granted
        finally:
            self.give_back(granted)

    def idle(self) -> int:
        with self._lock:
            return max(0, self.limit - self._taken)

    def take_idle(self) -> bool:
        """One more slot, only if one is idle now."""
        with self._lock:
            if self._taken >= self.limit:
                return False
            self._taken += 1
            return True

    def give_back(self, count: int) -> None:
        with self._lock:
            self._taken -= count


class Backlog:
    """Whether any object is still to start. Once the listing is done and no object waits for
    a worker, the run is in its tail: the large objects still streaming share at least
    `tail_streams` streams at once (on idle connections, which nothing else will want), so a
    lone large object does not stream alone while the fan-out learns."""

    def __init__(self) -> None:
        self.listed_all = threading.Event()
        self._waiting = 0
        self._streaming = 0  # large objects being fetched
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def large(self) -> Iterator[None]:
        with self._lock:
            self._streaming += 1
        try:
            yield
        finally:
            with self._lock:
                self._streaming -= 1

    def floor(self, tail_streams: int) -> int:
        """Streams each large object should have at least now: 1, or in the tail its share
        of `tail_streams`."""
        with self._lock:
            if not self.listed_all.is_set() or self._waiting:
                return 1
            return max(1, -(-tail_streams // max(1, self._streaming)))

    def queued(self) -> None:
        with self._lock:
            self._waiting += 1

    def started(self) -> None:
        with self._lock:
            self._waiting -= 1
