"""`s3drain watch` and the versions of one key: a message delivered twice, events arriving out
of order, an object overwritten or deleted before the watcher saw its event, and one
overwritten while the watcher's GET of it is in flight. Nothing is lost, the newest version is
delivered by its own event, the older version's message is deleted, the queue ends empty.

The watcher runs in this process against moto (its S3 notifies its SQS); where a GET must be
caught in flight, its S3 traffic goes through the fault proxy."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from s3drain.drain.summary import summary_json
from tests.support.eventkit import make_queue
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import s3_client
from tests.support.watchkit import (
    BUCKET,
    PREFIX,
    Watched,
    all_keys,
    audit_statuses,
    notify_queue,
    put,
    queue_depth,
    raw_tree,
    s3_body,
    s3_record,
    send,
    watch_once,
    watch_settings,
)

KEY = f"{PREFIX}daily.csv"
V1 = b"version one\n"
V2 = b"version two, a little longer\n"


def requests(run: Watched) -> dict[str, int]:
    by_operation: dict[str, int] = summary_json(run.result.drain.totals, run.result.drain.info)[
        "requests"
    ]["by_operation"]
    return by_operation


def test_a_message_sent_twice_is_drained_once(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    s3, sqs = lake_clients
    queue_url, _ = make_queue(sqs, "lake-twice")
    size, etag = put(s3, KEY, V1)
    body = s3_body(s3_record(KEY, size=size, etag=etag, sequencer="0A"))
    send(sqs, queue_url, body, body)
    base = tmp_path / "base"
    run = watch_once(watch_settings(base, s3_url, queue_url))
    assert run.code == 0, run.err
    assert raw_tree(base) == {"daily.csv": V1}
    assert audit_statuses(base) == {KEY: ["downloaded"]}
    assert requests(run).get("GetObject") == 1
    assert (run.inbox.received, run.inbox.deleted) == (2, 2)
    assert run.figures.found["event"] == 1
    assert all_keys(s3) == set()
    assert queue_depth(sqs, queue_url) == 0


def test_an_older_event_arriving_after_the_newer_one(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    """v2's event first, then v1's (an earlier sequencer): v2 is delivered; v1, gone from S3,
    is settled without a download and its message deleted."""
    s3, sqs = lake_clients
    queue_url, _ = make_queue(sqs, "lake-order")
    size1, etag1 = put(s3, KEY, V1)
    size2, etag2 = put(s3, KEY, V2)
    assert etag1 != etag2
    send(sqs, queue_url, s3_body(s3_record(KEY, size=size2, etag=etag2, sequencer="0055B2")))
    send(sqs, queue_url, s3_body(s3_record(KEY, size=size1, etag=etag1, sequencer="0055B1")))
    base = tmp_path / "base"
    run = watch_once(watch_settings(base, s3_url, queue_url))
    # An object changed under its event is routine for a watcher: not a partial result.
    assert run.code == 0, run.err
    assert raw_tree(base) == {"daily.csv": V2}
    assert sorted(audit_statuses(base)[KEY]) == ["changed", "downloaded"]
    assert run.count("downloaded") == 1 and run.count("changed") == 1
    assert (run.inbox.received, run.inbox.deleted, run.inbox.left) == (2, 2, 0)
    assert all_keys(s3) == set()
    assert queue_depth(sqs, queue_url) == 0


def test_objects_overwritten_or_deleted_before_the_watcher_saw_them(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    """Real notifications, created and removed: one key written twice, another written and
    deleted, all before the watcher starts. The newer version is delivered; the events for the
    older one and for the deleted object are settled without a download."""
    s3, sqs = lake_clients
    queue_url, queue_arn = make_queue(sqs, "lake-churn")
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                }
            ]
        },
    )
    gone = f"{PREFIX}short-lived.csv"
    put(s3, KEY, V1)
    put(s3, KEY, V2)
    put(s3, gone, b"here for a moment")
    s3.delete_object(Bucket=BUCKET, Key=gone)
    steady = {f"{PREFIX}steady{i}.csv": f"{i}".encode() for i in range(3)}
    for key, body in steady.items():
        put(s3, key, body)
    base = tmp_path / "base"
    run = watch_once(watch_settings(base, s3_url, queue_url))
    assert run.code == 0, run.err
    assert raw_tree(base) == {"daily.csv": V2} | {k[len(PREFIX) :]: v for k, v in steady.items()}
    statuses = audit_statuses(base)
    assert sorted(statuses[KEY]) == ["changed", "downloaded"]
    assert statuses[gone] == ["changed"]
    assert run.count("downloaded") == 4
    # The test event, 6 created, the removal before the start, and the 4 removals of the
    # watcher's own deletes (S3 sends them as it deletes: received before --once could end).
    assert (run.inbox.received, run.inbox.deleted) == (12, 12)
    assert (run.inbox.left, run.inbox.bad, run.inbox.test_events) == (0, 0, 1)
    assert all_keys(s3) == set()
    assert queue_depth(sqs, queue_url) == 0


def test_an_object_overwritten_while_its_get_is_in_flight(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    """The watcher's GET of v1 is held at the proxy while v2 is uploaded and its event
    arrives; v2's event waits for v1's object to settle (one key in flight at a time). v1's GET
    then meets v2 (412): changed, nothing placed. v2 is delivered by its own event."""
    s3, sqs = lake_clients
    queue_url, _ = notify_queue(s3, sqs)
    gets: list[tuple[float, str]] = []  # (when it reached the proxy, its If-Match)
    overwritten = threading.Event()
    released: list[float] = []

    def overwrite_during_the_first_get(info: RequestInfo) -> None:
        if info.op != "GetObject" or info.key != KEY:
            return
        gets.append((time.monotonic(), info.headers.get("if-match", "")))
        if len(gets) == 1:
            other = s3_client(s3_url)
            other.put_object(Bucket=BUCKET, Key=KEY, Body=V2)  # v2's event goes out now
            other.close()
            overwritten.set()
            time.sleep(2.0)  # long enough for the watcher to receive v2's event meanwhile
            released.append(time.monotonic())

    _, etag1 = put(s3, KEY, V1)
    base = tmp_path / "base"
    with FaultProxy(s3_url, record_log=True) as proxy:
        proxy.before_forward = overwrite_during_the_first_get
        run = watch_once(watch_settings(base, proxy.url, queue_url, sqs_url=s3_url))
    assert overwritten.is_set()
    assert run.code == 0, run.err
    assert raw_tree(base) == {"daily.csv": V2}
    assert audit_statuses(base)[KEY] == ["changed", "downloaded"]
    [(_, first), (second_sent, second)] = gets
    assert first == f'"{etag1}"' and second not in ("", first)
    assert second_sent > released[0]  # v2's GET waited for v1's to end
    assert run.figures.found["event"] == 2 and run.figures.merged == 0
    assert run.figures.delivered["event"] == 1
    assert (run.inbox.received, run.inbox.deleted, run.inbox.left) == (3, 3, 0)
    assert all_keys(s3) == set()
    assert queue_depth(sqs, queue_url) == 0
