"""What the threads of one drain run share: the settings and stages (`Context`), and the first
fatal error (`RunState`)."""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from s3drain.drain.deleter import Deleter
from s3drain.drain.linker import Linker
from s3drain.drain.reporter import Reporter
from s3drain.drain.settings import DrainSettings
from s3drain.drain.slots import Backlog
from s3drain.drain.transfer import Transfer
from s3drain.errors import InternalError, S3DrainError
from s3drain.local.ledger import Ledger
from s3drain.local.paths import Layout
from s3drain.s3.client import S3Client
from s3drain.s3.listing import ListCall
from s3drain.s3.retry import RetryPolicy


@dataclass
class RunState:
    """What the threads of one run share besides the settings: the first fatal error."""

    stop: threading.Event
    fatal: S3DrainError | None = None
    internal_error: str | None = None  # the first bug's traceback
    crash_log: Path | None = None  # where that traceback is written for the user to send
    any_get_succeeded: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, error: S3DrainError) -> None:
        with self.lock:
            if self.fatal is None:
                self.fatal = error
        self.stop.set()

    def crashed(self, exc: BaseException, where: str) -> None:
        """A bug in any thread: the run stops the way Ctrl-C stops it, and ends with exit 70
        and one line naming the file that holds the traceback. The first bug decides the line,
        whatever else stopped the run before it (that is said too) and whichever thread gets
        there first: the file is written and the error set in one step."""
        trace = "".join(traceback.format_exception(exc))
        with self.lock:
            if self.internal_error is None:
                self.internal_error = trace
                message = f"internal error in {where}: {exc!r}{self._log(where, trace)}"
                if self.fatal is not None:
                    message += f" (the run was already stopping: {self.fatal.message})"
                self.fatal = InternalError(
                    message,
                    hint="this is a bug in s3drain: please report it with that file; objects "
                    "not handled stay in S3 and the next run takes them",
                )
        self.stop.set()

    def _log(self, where: str, trace: str) -> str:
        if self.crash_log is None:
            return ""
        try:
            self.crash_log.parent.mkdir(parents=True, exist_ok=True)
            self.crash_log.write_text(f"s3drain internal error in {where}\n{trace}")
        except OSError:
            return ""
        return f"; the traceback is in {self.crash_log}"


@dataclass(frozen=True)
class Context:
    settings: DrainSettings
    layout: Layout
    reporter: Reporter
    transfer: Transfer
    deleter: Deleter | None  # None in a dry run
    linker: Linker | None  # None in a dry run
    state: RunState
    client: S3Client
    retry: RetryPolicy
    ledger: Ledger | None  # None in a dry run on a base path that has none yet
    versioned: bool
    backlog: Backlog = field(default_factory=Backlog)
    # What sends the listing's ListObjectsV2 where the run's requests go direct (None: the
    # client does).
    list_call: ListCall | None = None
