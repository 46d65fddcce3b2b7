"""The breaker for a dead endpoint: when S3 has answered nothing but connection failures, across
all workers, for `window` seconds, the run stops with exit 5 ("S3 unreachable since ...")
instead of letting every object burn its own retries.

A few seconds of resets is a blip, not an outage: until the window has passed since the last
request that got an answer, connection failures are retried (with waits long enough to ride
them out, see `retry.py`). Any answer from S3 — even an error like 404 or 412 — proves the
endpoint alive and closes the window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ProxyConnectionError,
    ReadTimeoutError,
)

DEFAULT_WINDOW = 10.0

CONNECTION_FAILURES = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ProxyConnectionError,
)


def is_connection_failure(exc: BaseException) -> bool:
    return isinstance(exc, CONNECTION_FAILURES)


class Breaker:
    def __init__(
        self,
        window: float = DEFAULT_WINDOW,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_trip: Callable[[str], None] | None = None,
    ) -> None:
        self.window = window
        self._clock = clock
        self._wall = wall
        self._on_trip = on_trip
        self._lock = threading.Lock()
        self._last_answer = clock()
        self._first_failure: float | None = None  # wall time, for the message
        self._failures = 0
        self.tripped: str | None = None
        self.event = threading.Event()  # set on trip: ends every wait that watches it

    def answered(self) -> None:
        """S3 answered a request (success or an S3 error): the endpoint is alive."""
        with self._lock:
            self._last_answer = self._clock()
            self._first_failure = None
            self._failures = 0

    def failed(self, exc: BaseException) -> bool:
        """A request got no answer. True when this failure trips the breaker."""
        if not is_connection_failure(exc):
            return False
        with self._lock:
            self._failures += 1
            if self._first_failure is None:
                self._first_failure = self._wall()
            silent = self._clock() - self._last_answer
            if self.tripped is not None or silent < self.window or self._failures < 2:
                return False
            since = time.strftime("%H:%M:%S", time.localtime(self._first_failure))
            self.tripped = (
                f"S3 unreachable since {since} ({self._failures} connection failures, no "
                f"answer for {silent:.0f} s): objects not yet handled stay in S3"
            )
            message = self.tripped
        self.event.set()
        if self._on_trip is not None:
            self._on_trip(message)
        return True
