"""The main thread's loop: listing pages in, selected objects out to the workers, at most
2 x workers in flight (one per worker, as many again waiting in a bounded queue), so memory does
not grow with the prefix. The workers are long-lived threads that take the next object from
that queue: no future, callback or semaphore per object, which on small objects cost about as
much CPU as the rest of the hand-over."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.drain.context import Context
from s3drain.drain.select import Selection, delivered
from s3drain.drain.source import Feed
from s3drain.drain.worker import handle
from s3drain.errors import AbortError, S3DrainError, describe
from s3drain.local.ledger_rows import Delivery
from s3drain.records import UNKNOWN_TIME, ObjectRecord
from s3drain.s3.preflight import explain


def dispatch(ctx: Context, feed: Feed) -> str | None:
    settings, reporter, state = ctx.settings, ctx.reporter, ctx.state
    selection = Selection(settings)
    pages_seen = 0
    stopped_early: str | None = None
    pages = feed.pages(ctx.client, ctx.retry, state.stop, ctx.list_call)
    with _Workers(ctx, settings.workers) as workers:
        try:
            for page in pages:
                pages_seen += 1
                reporter.listed(len(page))
                # One ledger query per page, not per object.
                rows = (
                    ctx.ledger.lookup(settings.bucket, [r.key for r in page]) if ctx.ledger else {}
                )
                for record in page:
                    why = selection.filtered(record)
                    if why is not None:
                        reporter.filtered(record, why)
                        if feed.passed_over is not None:
                            feed.passed_over(record, why)
                        continue
                    stopped_early = selection.stop(record)
                    if stopped_early or not workers.put(record, rows.get(record.key, [])):
                        break
                    selection.take(record)
                if stopped_early or state.stop.is_set():
                    break
            else:
                ctx.backlog.listed_all.set()
                reporter.listing_finished()
                selection.warn_unused_rules(reporter)
        except (ClientError, BotoCoreError) as exc:
            operation = feed.operation
            if pages_seen == 0:
                state.fail(
                    explain(
                        exc,
                        bucket=settings.bucket,
                        operation=operation,
                        endpoint=settings.s3.endpoint_url,
                    )
                )
            else:
                state.fail(
                    AbortError(
                        f"listing failed after {pages_seen} pages: {describe(exc)}; objects not "
                        "yet listed stay in S3 for the next run"
                    )
                )
        except S3DrainError as exc:  # the ledger could not be read
            state.fail(exc)
        except Exception as exc:
            state.crashed(exc, "the listing")
    return stopped_early


_Item = tuple[ObjectRecord, Delivery | None, Sequence[Delivery]]


class _Workers:
    """Up to `count` threads taking objects from one bounded queue, started as objects arrive
    (a run of ten objects starts no more than it needs); leaving the `with` waits for them to
    finish what they took."""

    def __init__(self, ctx: Context, count: int) -> None:
        self._ctx = ctx
        self._count = count
        self._queue: queue.Queue[_Item | None] = queue.Queue(count)
        self._threads: list[threading.Thread] = []
        # Threads waiting for an object that no queued object has claimed yet: each `put`
        # claims one or starts a thread, so an object is never left to a thread already taken.
        self._unclaimed = 0
        self._lock = threading.Lock()

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *_: object) -> None:
        for _thread in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _more_hands(self) -> None:
        with self._lock:
            if self._unclaimed:
                self._unclaimed -= 1
                return
            if len(self._threads) >= self._count:
                return
            thread = threading.Thread(
                target=self._work, name=f"s3drain-worker_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def put(self, record: ObjectRecord, rows: list[Delivery]) -> bool:
        """Queue one object (waiting while the workers are full); False once the run stops."""
        # An undated object (named by an event) takes its key's rows along, for `worker._dated`.
        undated = record.last_modified == UNKNOWN_TIME
        item = (record, delivered(record, rows), rows if undated else ())
        stop = self._ctx.state.stop
        backlog = self._ctx.backlog
        backlog.queued()
        self._more_hands()
        while not stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
            except queue.Full:
                continue
            return True
        backlog.started()  # never queued after all
        return False

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._ctx.backlog.started()
            handle(self._ctx, *item)
            with self._lock:
                self._unclaimed += 1
