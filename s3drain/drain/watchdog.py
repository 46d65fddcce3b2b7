"""Makes "ended" certain: once a run has been told to stop (Ctrl-C, SIGTERM, a fatal error, a
tripped breaker), it must end within `grace` seconds. Every wait in s3drain watches the stop
event, but a read from a stalled socket can still take its full timeout; past the grace the
watchdog calls `on_overrun` (the command line: one line on stderr, then exit at once). Cutting
a run short is as safe as a kill -9: temp files are swept and the ledger's unfinished rows are
completed by the next run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

STOP_GRACE_SECONDS = 30.0


class Watchdog:
    def __init__(
        self,
        stop: threading.Event,
        on_overrun: Callable[[], None],
        grace: float = STOP_GRACE_SECONDS,
    ) -> None:
        self._stop = stop
        self._done = threading.Event()
        self._on_overrun = on_overrun
        self._grace = grace
        self._thread = threading.Thread(target=self._watch, name="s3drain-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finished(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self._stop.wait(0.5):
                break
        if self._done.wait(self._grace):
            return
        self._on_overrun()
