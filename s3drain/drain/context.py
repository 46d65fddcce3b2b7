"""What the threads of one drain run share: the settings and stages (`Context`), and the first
fatal error (`RunState`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from s3drain.drain.deleter import Deleter
from s3drain.drain.reporter import Reporter
from s3drain.drain.settings import DrainSettings
from s3drain.drain.transfer import Transfer
from s3drain.errors import S3DrainError
from s3drain.local.paths import Layout


@dataclass
class RunState:
    """What the threads of one run share besides the settings: the first fatal error."""

    stop: threading.Event
    fatal: S3DrainError | None = None
    internal_error: str | None = None
    any_get_succeeded: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, error: S3DrainError) -> None:
        with self.lock:
            if self.fatal is None:
                self.fatal = error
        self.stop.set()


@dataclass(frozen=True)
class Context:
    settings: DrainSettings
    layout: Layout
    reporter: Reporter
    transfer: Transfer
    deleter: Deleter | None
    state: RunState
