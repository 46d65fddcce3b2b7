"""Forgetting what left S3 longer ago than --ledger-retention, while a run goes on.

A run prunes its ledger when it ends (`run.py`). A watcher may run for months, so the run
also prunes every hour: its ledger stays as small as a nightly drain's. A prune is one short
transaction; the linker and the deleter wait for it as for each other's commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from s3drain.errors import S3DrainError
from s3drain.local.ledger import Ledger

PRUNE_EVERY_SECONDS = 3600.0


class Pruner:
    """A thread that prunes the ledger every `every` seconds until `close`."""

    def __init__(
        self,
        ledger: Ledger,
        retention: float,
        *,
        fatal: Callable[[S3DrainError], None],
        crashed: Callable[[BaseException, str], None],
        every: float = PRUNE_EVERY_SECONDS,
    ) -> None:
        self._ledger = ledger
        self._retention = retention
        self._fatal = fatal
        self._crashed = crashed
        self._every = every
        self._closed = threading.Event()
        self.pruned = 0  # rows forgotten so far, for tests and the curious
        self._thread = threading.Thread(target=self._loop, name="s3drain-pruner", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._closed.wait(self._every):
            try:
                self.pruned += self._ledger.prune(time.time() - self._retention)
            except S3DrainError as exc:  # the ledger cannot be written: the run cannot go on
                self._fatal(exc)
                return
            except Exception as exc:  # a bug: the run stops, with its traceback logged
                self._crashed(exc, "the ledger's pruner")
                return
