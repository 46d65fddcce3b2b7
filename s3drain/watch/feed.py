"""The watcher's `Feed`: the objects S3's events name (and, every --reconcile, the prefix's
listing) as pages for the drain's pipeline, and each object's outcome back to the messages
that named it.

One key is in the pipeline once at a time. An event for a key already in flight with the same
ETag joins it (settled by its outcome, no second GET); an event for another version of that key
waits for the one in flight to settle and then goes in on its own, so two workers never write
one file. A listing pass skips keys in flight or waiting.

An event is a hint: its record carries the key, size and ETag it named and no date
(`UNKNOWN_TIME`); the worker's GET asks for exactly that ETag, so an object overwritten or
deleted since is settled `changed` (the newer version has an event of its own) and the worker
dates what it delivers from S3's answer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from botocore.exceptions import ClientError

from s3drain.drain.source import Feed, Pages
from s3drain.errors import error_code
from s3drain.events.inbox import Inbox
from s3drain.events.messages import ObjectEvent
from s3drain.events.report import Received
from s3drain.events.tracker import ObjectRef
from s3drain.events.tracker import Outcome as Verdict
from s3drain.records import UNKNOWN_TIME, ObjectRecord, Outcome, Status
from s3drain.s3.client import S3Client
from s3drain.s3.listing import ListCall, list_pages
from s3drain.s3.retry import RetryPolicy
from s3drain.watch.stats import Source, WatchStats

_POLL = 0.2  # seconds the feed waits for a batch before it looks at its other sources
_PAGE = 1000  # at most this many objects a page, as a listing's


@dataclass(frozen=True)
class _Named:
    """An object an event named, with what the event said about it."""

    ref: ObjectRef
    event: ObjectEvent


@dataclass
class _Flight:
    source: Source
    etag: str
    refs: list[ObjectRef] = field(default_factory=list)
    event_time: datetime | None = None


def verdict_of(outcome: Outcome, *, no_delete: bool) -> Verdict:
    """May the messages naming this object leave the queue? A failure leaves them, to come back
    after their visibility timeout; everything else is settled: delivered and deleted, already
    gone or changed (a newer version's event follows), or left in S3 with its reason audited."""
    if outcome.status is Status.FAILED:
        return "retry"
    delivered = outcome.status in (Status.DOWNLOADED, Status.PROCESSED, Status.PRESENT)
    if delivered and not outcome.deleted and not no_delete:
        return "retry"  # its delete failed: the message's return retries it, the ledger skips
    return "done"


class EventFeed:
    def __init__(
        self,
        inbox: Callable[[], Inbox],
        stats: WatchStats,
        *,
        bucket: str,
        prefix: str,
        reconcile: float,
        once: bool,
        min_age: float | None,
        no_delete: bool,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._make_inbox = inbox
        self._inbox: Inbox | None = None
        self._stop = threading.Event()  # the run's, once its pages start
        self._stats = stats
        self._bucket = bucket
        self._prefix = prefix
        self._reconcile = reconcile
        self._once = once
        self._min_age = min_age
        self._no_delete = no_delete
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._waiting: dict[str, list[_Named]] = {}  # for the key's flight to settle
        self._ready: deque[_Named] = deque()  # released from waiting, to go in next
        self._young: list[tuple[float, _Named]] = []  # (wall time it is old enough, named)

    @property
    def inbox(self) -> Inbox | None:
        return self._inbox

    def feed(self) -> Feed:
        return Feed(self._pages, settled=self._settled, passed_over=self._passed_over)

    # --- pages (the pipeline's main thread)

    def _pages(
        self, client: S3Client, retry: RetryPolicy, stop: threading.Event, call: ListCall | None
    ) -> Pages:
        # Started here, after the run's checks: a wrong bucket or a held lock takes no message.
        self._stop = stop
        self._inbox = inbox = self._make_inbox()
        inbox.start()
        next_pass = self._clock() if self._reconcile > 0 else float("inf")
        while not stop.is_set():
            if self._clock() >= next_pass:
                yield from self._listing_pass(client, retry, inbox, stop, call)
                self._stats.reconciled()
                next_pass = float("inf") if self._once else self._clock() + self._reconcile
                continue
            page = self._event_page(client, retry, inbox, timeout=_POLL)
            if page:
                yield page
            elif self._once and self._finished(inbox, next_pass):
                return

    def _listing_pass(
        self,
        client: S3Client,
        retry: RetryPolicy,
        inbox: Inbox,
        stop: threading.Event,
        call: ListCall | None,
    ) -> Pages:
        for listed in list_pages(client, self._bucket, self._prefix, retry, call=call):
            with self._lock:
                page = [r for r in listed if self._take(r.key, r.etag, "reconcile", None)]
            for _ in page:
                self._stats.found("reconcile")
            if page:
                yield page
            # Events keep flowing while a long listing runs.
            events = self._event_page(client, retry, inbox, timeout=0)
            if events:
                yield events
            if stop.is_set():
                return

    def _event_page(
        self, client: S3Client, retry: RetryPolicy, inbox: Inbox, timeout: float
    ) -> list[ObjectRecord]:
        named = self._due()
        wait = 0.0 if named else timeout
        while len(named) < _PAGE:
            batch = inbox.receive(timeout=wait)
            if not batch:
                break
            named.extend(_named(batch))
            wait = 0.0
        page: list[ObjectRecord] = []
        now = self._wall()
        for item in named:
            if self._min_age is not None and _age(item.event, now) < self._min_age:
                due = now + self._min_age - _age(item.event, now)
                with self._lock:
                    self._young.append((due, item))
                continue
            record = self._record(client, retry, item)
            if record is None:
                continue
            with self._lock:
                taken = self._take_named(record, item)
            if taken:
                self._stats.found("event")
                page.append(record)
        return page

    def _due(self) -> list[_Named]:
        now = self._wall()
        with self._lock:
            due = list(self._ready)
            self._ready.clear()
            if self._young:
                due += [n for when, n in self._young if when <= now]
                self._young = [(when, n) for when, n in self._young if when > now]
        return due

    def _record(self, client: S3Client, retry: RetryPolicy, item: _Named) -> ObjectRecord | None:
        event = item.event
        if event.size is not None and event.etag:
            return ObjectRecord(event.key, event.size, event.etag, UNKNOWN_TIME)
        # A notification without size or ETag (some servers' EventBridge events): S3 says.
        try:
            head = retry.run(
                f"HeadObject {event.key}",
                partial(client.head_object, Bucket=self._bucket, Key=event.key),
            )
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                self._settle_refs([item.ref], "done")  # gone already: nothing to drain
                return None
            raise
        return ObjectRecord(
            event.key, int(head["ContentLength"]), str(head["ETag"]).strip('"'), UNKNOWN_TIME
        )

    def _take(self, key: str, etag: str, source: Source, event_time: datetime | None) -> bool:
        """Into the pipeline unless the key is in flight or waits (call with the lock held)."""
        if key in self._flights or key in self._waiting:
            return False
        self._flights[key] = _Flight(source, etag, event_time=event_time)
        return True

    def _take_named(self, record: ObjectRecord, item: _Named) -> bool:
        flight = self._flights.get(record.key)
        if flight is not None and flight.etag == record.etag:
            flight.refs.append(item.ref)  # this version is in flight already: share its outcome
            self._stats.merged()
            return False
        if flight is not None or record.key in self._waiting:
            self._waiting.setdefault(record.key, []).append(item)
            return False
        self._flights[record.key] = _Flight("event", record.etag, [item.ref], item.event.event_time)
        return True

    def _finished(self, inbox: Inbox, next_pass: float) -> bool:
        """--once: nothing is left in hand and the inbox saw the queue drained: two long polls
        answered empty since the last messages came, one of them started after (`Inbox.drained`)."""
        if next_pass != float("inf") and self._reconcile > 0:
            return False
        with self._lock:
            busy = self._flights or self._waiting or self._ready or self._young
        return not busy and inbox.counters().in_flight == 0 and inbox.drained()

    # --- outcomes (the linker's and the deleter's threads)

    def _settled(self, outcome: Outcome) -> None:
        key = outcome.record.key
        verdict = verdict_of(outcome, no_delete=self._no_delete)
        with self._lock:
            flight = self._flights.pop(key, None)
            waiting = self._waiting.pop(key, [])
            later: list[_Named] = []
            same: list[ObjectRef] = []
            for item in waiting:
                if item.ref.etag == outcome.record.etag and verdict == "done":
                    same.append(item.ref)
                else:
                    later.append(item)
            self._ready.extend(later)
        if flight is None:
            return
        latency = None
        if flight.event_time is not None:
            latency = self._wall() - flight.event_time.timestamp()
        self._stats.settled(outcome, flight.source, latency)
        self._settle_refs([*flight.refs, *same], verdict, stopping=self._stop.is_set())

    def _passed_over(self, record: ObjectRecord, why: str) -> None:
        with self._lock:
            flight = self._flights.pop(record.key, None)
            later = self._waiting.pop(record.key, [])
            self._ready.extend(later)
        if flight is not None and flight.refs:
            self._stats.filtered()
            self._settle_refs(flight.refs, "done")  # left in S3 as a run leaves it

    def _settle_refs(self, refs: list[ObjectRef], verdict: Verdict, stopping: bool = False) -> None:
        if self._inbox is None:
            return
        for ref in refs:
            self._inbox.settled(ref, verdict, stopping=stopping)


def _named(batch: list[Received]) -> Iterator[_Named]:
    for received in batch:
        by_ref = {ObjectRef.of(e): e for e in received.events}
        for ref in received.todo:
            event = by_ref.get(ref)
            if event is not None:
                yield _Named(ref, event)


def _age(event: ObjectEvent, now: float) -> float:
    return float("inf") if event.event_time is None else now - event.event_time.timestamp()
