"""`watch/feed.EventFeed` alone, with a stand-in inbox: how events become pages, how one key
stays in flight once, what a listing pass skips, how each outcome settles its messages, and
what --min-age and --once do. The pipeline and SQS are not involved (tests/test_watch_*.py run
them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from s3drain.events.messages import ObjectEvent
from s3drain.events.report import InboxCounters, Received
from s3drain.events.tracker import Message, ObjectRef
from s3drain.records import UNKNOWN_TIME, ObjectRecord, Outcome, Status
from s3drain.s3.retry import RetryPolicy
from s3drain.watch import feed as feed_module
from s3drain.watch.feed import EventFeed, verdict_of
from s3drain.watch.stats import WatchStats

BUCKET = "lake"


class Inbox:
    """Stands in for `events.inbox.Inbox`: hands out the batches given, records settlements."""

    def __init__(self, batches: list[list[Received]]) -> None:
        self.batches = batches
        self.calls: list[tuple[str, str | None, str]] = []
        self.settled_while_stopping: list[str] = []
        self.started = False
        self.polls = 0
        self.mark = 0  # the polls when a receive last brought a batch

    def start(self) -> None:
        self.started = True

    def receive(self, timeout: float | None = None) -> list[Received]:
        self.polls += 1
        if not self.batches:
            return []
        self.mark = self.polls
        return self.batches.pop(0)

    def drained(self) -> bool:
        # A receive after the last batch found nothing (this fake answers at once).
        return not self.batches and self.polls > self.mark

    def settled(self, ref: ObjectRef, verdict: str, *, stopping: bool = False) -> None:
        self.calls.append((ref.key, ref.etag, verdict))
        if stopping:
            self.settled_while_stopping.append(ref.key)

    def counters(self) -> InboxCounters:
        return InboxCounters(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None)


def event(key: str, etag: str, *, seconds_ago: float = 0.0, size: int = 3) -> ObjectEvent:
    when = datetime.fromtimestamp(datetime.now(UTC).timestamp() - seconds_ago, UTC)
    return ObjectEvent(BUCKET, key, "created", "ObjectCreated:Put", "s3", when, "01", size, etag)


def received(message_id: str, *events: ObjectEvent) -> Received:
    message = Message(message_id, f"rh-{message_id}", "{}", None, 1, 0.0)
    return Received(message, events, tuple(ObjectRef.of(e) for e in events))


def make_feed(inbox: Inbox, **options: Any) -> tuple[EventFeed, WatchStats]:
    values: dict[str, Any] = {
        "bucket": BUCKET,
        "prefix": "in/",
        "reconcile": 0.0,
        "once": True,
        "min_age": None,
        "no_delete": False,
    }
    values |= options
    stats = WatchStats()
    return EventFeed(lambda: inbox, stats, **values), stats  # type: ignore[arg-type,return-value]


def pages_of(feed: EventFeed, stop: threading.Event | None = None) -> Iterator[list[ObjectRecord]]:
    return feed.feed().pages(None, RetryPolicy(max_attempts=1), stop or threading.Event(), None)  # type: ignore[arg-type]


def settle(feed: EventFeed, record: ObjectRecord, status: Status, *, deleted: bool = True) -> None:
    settled = feed.feed().settled
    assert settled is not None
    settled(Outcome(record, status, deleted=deleted))


def test_events_become_undated_records_with_the_named_size_and_etag() -> None:
    inbox = Inbox([[received("m1", event("in/a.csv", "e1"), event("in/b.csv", "e2", size=9))]])
    feed, stats = make_feed(inbox)
    first = next(pages_of(feed))
    assert [(r.key, r.size, r.etag, r.last_modified) for r in first] == [
        ("in/a.csv", 3, "e1", UNKNOWN_TIME),
        ("in/b.csv", 9, "e2", UNKNOWN_TIME),
    ]
    assert inbox.started
    assert stats.figures().found == {"event": 2, "reconcile": 0}


def test_an_event_for_the_version_in_flight_joins_it_and_shares_its_outcome() -> None:
    inbox = Inbox([[received("m1", event("in/a.csv", "e1"))]])
    feed, stats = make_feed(inbox)
    pages = pages_of(feed)
    (record,) = next(pages)
    inbox.batches.append([received("m2", event("in/a.csv", "e1"))])  # a duplicate, meanwhile
    finished = threading.Timer(0.5, lambda: settle(feed, record, Status.DOWNLOADED))
    finished.start()
    assert list(pages) == []  # no second record for the key; --once ends once it settles
    finished.join()
    assert inbox.calls == [("in/a.csv", "e1", "done"), ("in/a.csv", "e1", "done")]
    assert stats.figures().merged == 1


def test_another_version_waits_for_the_one_in_flight_then_goes_in_on_its_own() -> None:
    inbox = Inbox(
        [[received("m1", event("in/a.csv", "old")), received("m2", event("in/a.csv", "new"))]]
    )
    feed, _ = make_feed(inbox)
    pages = pages_of(feed)
    (first,) = next(pages)
    assert first.etag == "old"
    settle(feed, first, Status.DOWNLOADED)
    (second,) = next(pages)
    assert second.etag == "new"
    settle(feed, second, Status.DOWNLOADED)
    assert list(pages) == []
    assert inbox.calls == [("in/a.csv", "old", "done"), ("in/a.csv", "new", "done")]


def test_a_version_changed_since_its_event_settles_its_message_and_lets_the_next_in() -> None:
    # old in flight, new waiting behind it
    inbox = Inbox(
        [[received("m1", event("in/a.csv", "old")), received("m2", event("in/a.csv", "new"))]]
    )
    feed, _ = make_feed(inbox)
    pages = pages_of(feed)
    (first,) = next(pages)
    settle(feed, first, Status.CHANGED, deleted=False)  # overwritten since: its event follows
    (second,) = next(pages)
    assert second.etag == "new"
    assert inbox.calls == [("in/a.csv", "old", "done")]


def test_a_listing_pass_skips_keys_in_flight_and_an_event_joins_the_listed_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed = [
        ObjectRecord("in/a.csv", 3, "e1", datetime(2026, 1, 1, tzinfo=UTC)),
        ObjectRecord("in/b.csv", 3, "e2", datetime(2026, 1, 1, tzinfo=UTC)),
    ]
    passes: list[int] = []

    def list_pages(*_: Any, **__: Any) -> Iterator[list[ObjectRecord]]:
        passes.append(1)
        yield listed

    monkeypatch.setattr(feed_module, "list_pages", list_pages)
    inbox = Inbox([[received("m1", event("in/a.csv", "e1"))]])
    feed, stats = make_feed(inbox, reconcile=0.3, once=False)
    stop = threading.Event()
    pages = pages_of(feed, stop)
    assert [r.key for r in next(pages)] == ["in/a.csv", "in/b.csv"]
    # The next passes find both still in flight: nothing new, however often they list.
    threading.Timer(1.0, stop.set).start()
    assert list(pages) == []
    assert len(passes) >= 2
    settle(feed, listed[0], Status.DOWNLOADED)
    # The event's message is settled by the listed object's outcome (same ETag).
    assert inbox.calls == [("in/a.csv", "e1", "done")]
    figures = stats.figures()
    assert figures.found == {"event": 0, "reconcile": 2}
    assert figures.merged == 1
    assert figures.delivered == {"event": 0, "reconcile": 1}


@pytest.mark.parametrize(
    ("status", "deleted", "no_delete", "verdict"),
    [
        (Status.DOWNLOADED, True, False, "done"),
        (Status.DOWNLOADED, False, False, "retry"),  # its delete failed: the message comes back
        (Status.DOWNLOADED, False, True, "done"),  # --no-delete: delivered is settled
        (Status.PROCESSED, True, False, "done"),
        (Status.PRESENT, False, False, "retry"),
        (Status.CHANGED, False, False, "done"),  # the newer version's event follows
        (Status.CONFLICT, False, False, "done"),  # left in S3, reason audited
        (Status.REFUSED, False, False, "done"),
        (Status.FAILED, False, False, "retry"),
        (Status.SKIPPED, False, False, "done"),
    ],
)
def test_verdicts(status: Status, deleted: bool, no_delete: bool, verdict: str) -> None:
    record = ObjectRecord("in/a.csv", 3, "e1", UNKNOWN_TIME)
    assert verdict_of(Outcome(record, status, deleted=deleted), no_delete=no_delete) == verdict


def test_a_young_event_waits_for_min_age_and_an_old_one_does_not() -> None:
    inbox = Inbox(
        [
            [
                received("m1", event("in/young.csv", "e1")),
                received("m2", event("in/old.csv", "e2", seconds_ago=60)),
            ]
        ]
    )
    feed, _ = make_feed(inbox, min_age=0.8, once=False)
    pages = pages_of(feed)
    started = time.monotonic()
    assert [r.key for r in next(pages)] == ["in/old.csv"]
    assert [r.key for r in next(pages)] == ["in/young.csv"]
    assert time.monotonic() - started >= 0.6


def test_once_ends_only_when_nothing_is_in_hand() -> None:
    inbox = Inbox([[received("m1", event("in/a.csv", "e1"))]])
    feed, _ = make_feed(inbox)
    pages = pages_of(feed)
    (record,) = next(pages)
    started = time.monotonic()
    threading.Timer(0.6, lambda: settle(feed, record, Status.DOWNLOADED)).start()
    assert list(pages) == []
    assert time.monotonic() - started >= 0.5  # it waited for the object in flight


def test_filtered_objects_settle_their_messages() -> None:
    inbox = Inbox([[received("m1", event("in/skip.tmp", "e1"))]])
    feed, stats = make_feed(inbox)
    (record,) = next(pages_of(feed))
    passed_over = feed.feed().passed_over
    assert passed_over is not None
    passed_over(record, "excluded by *.tmp")
    assert inbox.calls == [("in/skip.tmp", "e1", "done")]
    assert stats.figures().filtered == 1


def test_an_object_settled_after_the_stop_tells_the_inbox_so() -> None:
    """A GET cut short by the run's stop fails: its message must go back at once (the inbox
    releases it), not wait out its visibility timeout."""
    inbox = Inbox([[received("m1", event("in/a.csv", "e1"), event("in/b.csv", "e2"))]])
    feed, _ = make_feed(inbox, once=False)
    stop = threading.Event()
    pages = pages_of(feed, stop)
    first, second = next(pages)
    settle(feed, first, Status.FAILED, deleted=False)
    stop.set()
    settle(feed, second, Status.FAILED, deleted=False)
    assert inbox.calls == [("in/a.csv", "e1", "retry"), ("in/b.csv", "e2", "retry")]
    assert inbox.settled_while_stopping == ["in/b.csv"]
