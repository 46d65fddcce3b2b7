"""Verified temp files get their real names here, a batch at a time.

A worker that has fetched, verified and fsynced an object hands its still-open temp file over
and moves on to the next object. Every `window` seconds (sooner when `max_waiting` files
wait), the linker records all of them in the ledger as `staged` in one commit, then links each
to its real name (never over another file) and closes it: the ledger holds a file's inode
before the file has its name, as recovery needs, with one commit per batch rather than per
object. Until its link the temp file stays open and locked, so no other run's sweep takes it.

Linked objects go on to the deleter; one whose name was taken meanwhile is a `conflict`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from s3drain.drain.batches import BatchQueue
from s3drain.drain.verify import Verified
from s3drain.errors import S3DrainError, describe
from s3drain.local.fs import LocalFS
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_rows import NewDelivery
from s3drain.records import FileId, ObjectRecord, Outcome, Status

WINDOW_SECONDS = 0.1
# Files waiting in a batch, and as many again queued: at most 2 x 128 open temp files, well
# below the usual limit of 1024 descriptors.
MAX_WAITING = 128


@dataclass(frozen=True)
class Fetched:
    """A verified, fsynced temp file, still open (and locked), waiting for its real name."""

    record: ObjectRecord  # with the version the GET returned
    fd: int
    temp: str
    target: str
    file: FileId
    verified: Verified


class Linker:
    def __init__(
        self,
        fs: LocalFS,
        ledger: Ledger,
        *,
        linked: Callable[[Outcome], None],
        record: Callable[[Outcome], None],
        fatal: Callable[[S3DrainError], None],
        crashed: Callable[[BaseException, str], None],
        window: float = WINDOW_SECONDS,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._fs = fs
        self._ledger = ledger
        self._linked = linked
        self._record = record
        self._fatal = fatal
        self._crashed = crashed
        self._broken: S3DrainError | None = None
        # Bounded: a worker waits here when the linker is behind, instead of holding more open
        # files than the process may have.
        self._queue: BatchQueue[Fetched] = BatchQueue(
            window=window, size=max_waiting, maxsize=max_waiting
        )
        self._thread = threading.Thread(target=self._loop, name="s3drain-linker", daemon=True)
        self._thread.start()

    def submit(self, item: Fetched) -> None:
        self._queue.put(item)

    def close(self) -> None:
        self._queue.close()
        self._thread.join()

    def _loop(self) -> None:
        for batch in self._queue.batches():
            self._flush_guarded(batch)

    def _flush_guarded(self, batch: list[Fetched]) -> None:
        # Indexes into `batch`: whose descriptor is closed (never close a number twice: it may
        # be another thread's by then) and who has its outcome (exactly one each).
        closed: set[int] = set()
        answered: set[int] = set()
        try:
            self._flush(batch, closed, answered)
        except Exception as exc:
            # A bug: the run stops; every file not yet placed is dropped, and each object gets
            # its one outcome (it stays in S3).
            self._broken = self._broken or S3DrainError(f"internal error in the linker: {exc!r}")
            self._crashed(exc, "the linker")
            self._drop(batch, "internal error in the linker", closed, answered)

    def _flush(self, batch: list[Fetched], closed: set[int], answered: set[int]) -> None:
        if self._broken is not None:
            self._drop(batch, self._broken.message, closed, answered)
            return
        rows = [
            NewDelivery(
                i.record, i.target, i.file, i.verified.checksums, i.verified.label, "downloaded"
            )
            for i in batch
        ]
        try:
            ids = self._ledger.stage_many(rows)
        except S3DrainError as exc:
            self._broken = exc
            self._fatal(exc)
            self._drop(batch, f"not recorded in the ledger: {exc.message}", closed, answered)
            return
        unplaced: list[int] = []
        for n, (item, delivery_id) in enumerate(zip(batch, ids, strict=True)):
            try:
                outcome = self._place(item, delivery_id)
            finally:
                closed.add(n)
            answered.add(n)
            if outcome.status is Status.DOWNLOADED:
                self._linked(outcome)
            else:
                unplaced.append(delivery_id)
                self._record(outcome)
        if unplaced:
            with contextlib.suppress(S3DrainError):  # a staged row without its file is dropped
                self._ledger.discard_many(unplaced)  # by the next run's recovery anyway

    def _place(self, item: Fetched, delivery_id: int) -> Outcome:
        record = item.record
        try:
            self._fs.link_into_place(item.temp, item.target)
        except FileExistsError:
            self._remove(item)
            if self._fs.is_dir(item.target):  # `a/b` was fetched first and made the folder `a`
                return Outcome(
                    record, Status.REFUSED, f"a folder is in the way of the file {item.target}"
                )
            return Outcome(
                record,
                Status.CONFLICT,
                f"a file appeared at {item.target} during the download",
                local_path=item.target,
            )
        except OSError as exc:
            self._remove(item)
            return Outcome(record, Status.FAILED, f"local error: {describe(exc)}")
        finally:
            with contextlib.suppress(OSError):
                self._fs.close(item.fd)  # only now is the lock gone
        # The folder is fsynced by the deleter, once per batch, before the row says "delivered".
        return Outcome(
            record,
            Status.DOWNLOADED,
            local_path=item.target,
            verified=item.verified.label,
            bytes_downloaded=record.size,
            delivery_id=delivery_id,
            checksums=item.verified.checksums,
        )

    def _remove(self, item: Fetched) -> None:
        with contextlib.suppress(OSError):  # the next run's sweep takes it
            self._fs.remove(item.temp)

    def _drop(
        self, items: Sequence[Fetched], why: str, closed: set[int], answered: set[int]
    ) -> None:
        for n, item in enumerate(items):
            if n in answered:
                continue
            # Nothing here may raise: this runs after a bug too, and every descriptor must be
            # closed (its lock released) and every object answered, or the run cannot end.
            with contextlib.suppress(Exception):
                self._fs.remove(item.temp)  # harmless where the link was made: the name stays
            if n not in closed:
                closed.add(n)
                with contextlib.suppress(Exception):  # close(2) frees the number even so
                    self._fs.close(item.fd)
            answered.add(n)
            with contextlib.suppress(Exception):
                self._record(
                    Outcome(
                        item.record, Status.FAILED, f"not placed: {why}", local_path=item.target
                    )
                )
