"""`s3drain watch` reading each kind of message: S3 -> SQS sent by a real bucket notification
(moto and LocalStack), S3 -> SNS -> SQS (enveloped and raw) and EventBridge as the bodies those
services send, S3's test event; keys that break hand-written consumers and keys the drain
refuses (the outcome a plain drain gives them); messages that are not S3 events, records for
another bucket or prefix, objects the filters leave, and --min-age.

The watcher runs in this process (`run_watch`, short polls, 0.2 s delete window) against the
server's S3 and SQS; what counts is what ends up on disk, in the bucket and in the queue."""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from s3drain.config.sources import MiB
from s3drain.drain.filters import compile_rule
from s3drain.drain.run import run_drain
from tests.support.drainkit import drain_settings, ledger_rows
from tests.support.eventkit import make_queue, sqs_client
from tests.support.server import s3_client
from tests.support.watchkit import (
    BUCKET,
    PREFIX,
    Watcher,
    all_keys,
    audit_statuses,
    bodies_left,
    by_key,
    eventbridge_body,
    notify_queue,
    now_iso,
    put,
    queue_depth,
    raw_tree,
    s3_body,
    s3_record,
    s3_test_event_body,
    send,
    sns_envelope,
    wait_until,
    watch_once,
    watch_settings,
)

# Keys that break hand-written consumers: a space, a literal '+', what looks encoded already,
# a literal '%', non-ASCII, the characters form encoding escapes, a folder path.
KEYS = [
    f"{PREFIX}plain.csv",
    f"{PREFIX}a b.csv",
    f"{PREFIX}a+b.csv",
    f"{PREFIX}a + b.csv",
    f"{PREFIX}100% done.csv",
    f"{PREFIX}%2B literally.csv",
    f"{PREFIX}%41%20.csv",
    f"{PREFIX}ünïcödé 日本 🙂.csv",
    f"{PREFIX}deep/er/x=1&y=2;@:$,.csv",
    f"{PREFIX}~tilde*star'quote(paren).csv",
]


def body_of(key: str) -> bytes:
    return f"the bytes of {key}\n".encode() * 3


def assert_all_settled(s3: Any, sqs: Any, queue_url: str) -> None:
    assert all_keys(s3) == set()
    assert queue_depth(sqs, queue_url) == 0


# --- each route ---------------------------------------------------------------------------------


def test_s3_to_sqs_real_notifications(tmp_path: Path, events_url: str) -> None:
    """S3 -> SQS as each server's S3 sends it (moto form-encodes the key, LocalStack
    path-encodes it), and the test event S3 sends when the configuration is saved."""
    s3, sqs = s3_client(events_url), sqs_client(events_url)
    s3.create_bucket(Bucket=BUCKET)
    queue_url, _ = notify_queue(s3, sqs, prefix=PREFIX)
    objects = {key: body_of(key) for key in KEYS}
    for key, body in objects.items():
        put(s3, key, body)
    base = tmp_path / "base"
    run = watch_once(watch_settings(base, events_url, queue_url))
    assert run.code == 0, run.err
    assert raw_tree(base) == by_key(objects)
    assert run.figures.found == {"event": len(KEYS), "reconcile": 0}
    assert run.figures.delivered["event"] == len(KEYS)
    assert run.inbox.test_events == 1
    assert (run.inbox.received, run.inbox.deleted) == (len(KEYS) + 1, len(KEYS) + 1)
    assert (run.inbox.bad, run.inbox.ignored, run.inbox.left) == (0, 0, 0)
    assert audit_statuses(base) == {k: ["downloaded"] for k in KEYS}
    assert_all_settled(s3, sqs, queue_url)
    s3.close()
    sqs.close()


ROUTES = ["sns-envelope", "sns-raw", "eventbridge"]


@pytest.mark.parametrize("route", ROUTES)
def test_each_route_as_its_service_sends_it(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any], route: str
) -> None:
    """The bodies SNS (with and without raw message delivery) and EventBridge put in the queue:
    the key form-encoded in S3's records, as it is in EventBridge's events. S3's test event
    (in SNS's envelope on that route) is acknowledged beside them."""
    s3, sqs = lake_clients
    queue_url, _ = make_queue(sqs, f"lake-{route}")
    objects = {key: body_of(key) for key in KEYS}
    for key, body in objects.items():
        size, etag = put(s3, key, body)
        if route == "eventbridge":
            send(sqs, queue_url, eventbridge_body(key, size=size, etag=etag))
        else:
            inner = s3_body(s3_record(key, size=size, etag=etag))
            send(sqs, queue_url, sns_envelope(inner) if route == "sns-envelope" else inner)
    test_event = s3_test_event_body()
    send(sqs, queue_url, sns_envelope(test_event) if route == "sns-envelope" else test_event)
    base = tmp_path / "base"
    run = watch_once(watch_settings(base, s3_url, queue_url))
    assert run.code == 0, run.err
    assert raw_tree(base) == by_key(objects)
    assert run.figures.delivered == {"event": len(KEYS), "reconcile": 0}
    assert run.inbox.test_events == 1
    assert (run.inbox.received, run.inbox.deleted) == (len(KEYS) + 1, len(KEYS) + 1)
    assert run.inbox.bad == 0
    assert_all_settled(s3, sqs, queue_url)


def test_one_message_naming_several_objects_leaves_once_all_are_settled(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    """One message, four records; one object above --multipart-threshold (1 MiB here), so an
    event's record goes through the streamed fetch too, dated by S3's answer in the ledger."""
    s3, sqs = lake_clients
    queue_url, _ = make_queue(sqs, "lake-many")
    objects = {f"{PREFIX}batch/{i}.csv": body_of(str(i)) for i in range(3)}
    objects[f"{PREFIX}batch/large.bin"] = bytes(range(256)) * 4096 * 3  # 3 MiB
    records = [s3_record(k, size=len(v), etag=put(s3, k, v)[1]) for k, v in objects.items()]
    send(sqs, queue_url, s3_body(*records))
    base = tmp_path / "base"
    settings = watch_settings(base, s3_url, queue_url)
    streamed = replace(
        settings, drain=replace(settings.drain, multipart_threshold=MiB, part_size=MiB)
    )
    run = watch_once(streamed)
    assert run.code == 0, run.err
    assert raw_tree(base) == by_key(objects)
    assert (run.inbox.received, run.inbox.deleted) == (1, 1)
    assert run.figures.found["event"] == 4
    rows = ledger_rows(streamed.drain)
    assert len(rows) == 4 and all(row["last_modified"] for row in rows)
    assert_all_settled(s3, sqs, queue_url)


def test_an_event_without_size_or_etag_is_asked_of_s3(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    """Some servers' EventBridge events name the key alone: a HEAD says what the object is,
    and an object already gone is settled (its message deleted) without more ado."""
    s3, sqs = lake_clients
    queue_url, _ = make_queue(sqs, "lake-bare")
    here, gone = f"{PREFIX}here.csv", f"{PREFIX}gone.csv"
    put(s3, here, b"still here")
    put(s3, gone, b"gone already")
    s3.delete_object(Bucket=BUCKET, Key=gone)
    for key in (here, gone):
        event = json.loads(eventbridge_body(key, size=0, etag=""))
        del event["detail"]["object"]["size"], event["detail"]["object"]["etag"]
        send(sqs, queue_url, json.dumps(event))
    base = tmp_path / "base"
    run = watch_once(watch_settings(base, s3_url, queue_url))
    assert run.code == 0, run.err
    assert raw_tree(base) == {"here.csv": b"still here"}
    assert run.figures.found["event"] == 1
    assert (run.inbox.received, run.inbox.deleted) == (2, 2)
    assert audit_statuses(base) == {here: ["downloaded"]}
    assert_all_settled(s3, sqs, queue_url)


# --- keys ---------------------------------------------------------------------------------------

REFUSED = {
    f"{PREFIX}../escape.csv": b"would land outside raw/",
    f"{PREFIX}a//b.csv": b"an empty segment",
    f"{PREFIX}folder/": b"a folder name holding bytes",
    f"{PREFIX}tab\tkey.csv": b"a control character",
    f"{PREFIX}.s3drain-tmp.csv": b"a name kept for temp files",
}
MARKER = f"{PREFIX}empty-folder/"  # a folder marker: skipped, left, quietly


def test_keys_get_the_outcome_a_plain_drain_gives_them(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    """Every key, whether the drain takes it or refuses it, ends as it would in a drain run of
    the same objects; a refused object stays in S3 and its message is still deleted (it is
    settled: waiting would only send it to the dead-letter queue)."""
    s3, sqs = lake_clients
    fine = {key: body_of(key) for key in KEYS}
    objects = fine | REFUSED | {MARKER: b""}
    # The plain drain, of a twin bucket holding the same keys.
    s3.create_bucket(Bucket="twin")
    for key, body in objects.items():
        put(s3, key, body, bucket="twin")
    plain_base = tmp_path / "plain"
    plain = drain_settings(
        plain_base, bucket="twin", prefix=PREFIX, endpoint_url=s3_url, addressing_style="path"
    )
    drained = run_drain(plain, out=io.StringIO(), err=io.StringIO())
    assert int(drained.exit_code) == 1  # refusals leave objects: a partial run
    # The watcher, on the events S3 sends for them.
    queue_url, _ = notify_queue(s3, sqs)
    for key, body in objects.items():
        put(s3, key, body)
    base = tmp_path / "base"
    run = watch_once(watch_settings(base, s3_url, queue_url))
    assert run.code == int(drained.exit_code), run.err
    assert audit_statuses(base) == audit_statuses(plain_base)
    assert {k for k, v in audit_statuses(base).items() if v == ["refused"]} == set(REFUSED)
    assert raw_tree(base) == raw_tree(plain_base) == by_key(fine)
    assert all_keys(s3) == set(REFUSED) | {MARKER} == all_keys(s3, "twin")
    assert run.figures.found["event"] == len(objects)
    assert run.inbox.deleted == run.inbox.received == len(objects) + 1  # and the test event
    assert queue_depth(sqs, queue_url) == 0


# --- messages the watcher does not drain ----------------------------------------------------


def test_messages_that_are_not_s3_events_stay_and_are_counted_once(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    """Beside good messages: a body that is not JSON and another producer's JSON. The good ones
    are drained; the bad ones come back again and again (a 1 s visibility timeout here), are
    logged and counted once each, stay in the queue, and the watcher goes on."""
    s3, sqs = lake_clients
    queue_url, _ = make_queue(sqs, "lake-mixed")
    not_json = "this is <not> JSON {"
    foreign = json.dumps({"orderId": 42, "status": "shipped", "Records": "not a list"})
    good = {f"{PREFIX}good{i}.csv": body_of(str(i)) for i in range(3)}
    send(sqs, queue_url, not_json)
    for key, body in good.items():
        size, etag = put(s3, key, body)
        send(sqs, queue_url, s3_body(s3_record(key, size=size, etag=etag)))
    send(sqs, queue_url, foreign)
    base = tmp_path / "base"
    watcher = Watcher(
        watch_settings(base, s3_url, queue_url, once=False, visibility_timeout=1)
    ).start()
    try:
        wait_until(lambda: queue_depth(sqs, queue_url) == 2, 20, "the good messages' deletes")
        wait_until(lambda: watcher.err_text().count("warning") >= 2, 10, "the bad ones' lines")
        time.sleep(3.5)  # the bad messages come back after 1 s: received again, and again
        assert watcher.running()
    finally:
        run = watcher.stop()
    assert run.code == 130  # stopped, not ended by the bad messages
    assert raw_tree(base) == by_key(good)
    assert run.inbox.bad == 2
    assert run.inbox.received >= len(good) + 2 * 2  # each bad one at least twice
    assert run.inbox.deleted == len(good)
    warnings = [line for line in run.err.splitlines() if ": bad: " in line]
    assert len(warnings) == 2, run.err
    assert len({re.search(r"message (\S+):", line).group(1) for line in warnings}) == 2  # type: ignore[union-attr]
    assert any("not JSON" in line for line in warnings)
    assert sorted(bodies_left(sqs, queue_url)) == sorted([not_json, foreign])
    assert all_keys(s3) == set()


def test_records_for_another_bucket_or_prefix_are_acknowledged(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    s3, sqs = lake_clients
    queue_url, _ = make_queue(sqs, "lake-shared")
    s3.create_bucket(Bucket="other")
    others = [
        s3_record(
            f"{PREFIX}theirs.csv",
            size=3,
            etag=put(s3, f"{PREFIX}theirs.csv", b"abc", "other")[1],
            bucket="other",
        ),
        s3_record("out/outside.csv", size=3, etag=put(s3, "out/outside.csv", b"def")[1]),
    ]
    ours_key = f"{PREFIX}ours.csv"
    size, etag = put(s3, ours_key, b"ours")
    send(sqs, queue_url, s3_body(others[0]), s3_body(others[1]))
    # One message with a record of ours and one outside the prefix: drained and acknowledged.
    mixed_key = "in-not-quite/other.csv"  # shares the prefix's letters, not its folder
    mixed_outside = s3_record(mixed_key, size=1, etag=put(s3, mixed_key, b"x")[1])
    send(sqs, queue_url, s3_body(s3_record(ours_key, size=size, etag=etag), mixed_outside))
    base = tmp_path / "base"
    run = watch_once(watch_settings(base, s3_url, queue_url))
    assert run.code == 0, run.err
    assert raw_tree(base) == {"ours.csv": b"ours"}
    assert run.inbox.ignored == 3
    assert (run.inbox.received, run.inbox.deleted, run.inbox.bad) == (3, 3, 0)
    assert all_keys(s3) == {"out/outside.csv", mixed_key}
    assert all_keys(s3, "other") == {f"{PREFIX}theirs.csv"}
    assert queue_depth(sqs, queue_url) == 0


def test_objects_the_filters_leave_are_acknowledged_and_stay_in_s3(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    s3, sqs = lake_clients
    queue_url, _ = notify_queue(s3, sqs)
    objects = {
        f"{PREFIX}keep.csv": b"taken",
        f"{PREFIX}part.tmp": b"excluded",
        f"{PREFIX}deep/also.tmp": b"excluded too",
    }
    for key, body in objects.items():
        put(s3, key, body)
    base = tmp_path / "base"
    settings = watch_settings(base, s3_url, queue_url)
    excluding = replace(
        settings, drain=replace(settings.drain, rules=(compile_rule("*.tmp", include=False),))
    )
    run = watch_once(excluding)
    assert run.code == 0, run.err
    assert raw_tree(base) == {"keep.csv": b"taken"}
    assert run.figures.filtered == 2
    assert (run.inbox.received, run.inbox.deleted) == (4, 4)  # and the test event
    assert all_keys(s3) == {f"{PREFIX}part.tmp", f"{PREFIX}deep/also.tmp"}
    assert queue_depth(sqs, queue_url) == 0


def test_min_age_holds_a_young_event_until_it_is_old_enough(
    tmp_path: Path, s3_url: str, lake_clients: tuple[Any, Any]
) -> None:
    """The event waits in the watcher, its message kept invisible past a 2 s visibility
    timeout by the heartbeat, and is drained once the object is 3 s old."""
    s3, sqs = lake_clients
    queue_url, _ = make_queue(sqs, "lake-young")
    key = f"{PREFIX}young.csv"
    size, etag = put(s3, key, b"fresh")
    uploaded = time.time()
    send(sqs, queue_url, s3_body(s3_record(key, size=size, etag=etag, event_time=now_iso())))
    base = tmp_path / "base"
    settings = watch_settings(base, s3_url, queue_url, visibility_timeout=2)
    watcher = Watcher(replace(settings, drain=replace(settings.drain, min_age=3.0))).start()
    try:
        time.sleep(max(0.0, uploaded + 2.5 - time.time()))
        assert raw_tree(base) == {}  # too young still
        assert bodies_left(sqs, queue_url) == []  # held, past its 2 s visibility timeout
        wait_until((base / "raw" / "young.csv").exists, 10, "the download")
        appeared = time.time()
        run = watcher.wait()
    finally:
        watcher.stop_event.set()
    assert appeared - uploaded >= 2.9
    assert run.code == 0, run.err
    assert raw_tree(base) == {"young.csv": b"fresh"}
    assert run.figures.latency_count == 1 and run.figures.p50 is not None
    assert run.figures.p50 >= 2.9
    assert (run.inbox.received, run.inbox.deleted, run.inbox.visibility_lost) == (1, 1, 0)
    assert_all_settled(s3, sqs, queue_url)
