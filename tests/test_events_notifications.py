"""Real bucket notifications, sent by each server's own S3, read by the inbox: S3 -> SQS and
S3 -> SNS -> SQS (raw delivery on and off) on moto and on LocalStack, S3 -> EventBridge -> SQS
on moto (LocalStack's EventBridge needs moto inside its own venv, which the pinned install does
not have). The keys that break hand-written consumers come back exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3drain.events.messages import ObjectEvent, TestEvent, parse_message
from tests.support.eventkit import (
    TRICKY_KEYS,
    collect,
    make_queue,
    peek,
    running_inbox,
    sqs_client,
    wait_for,
)
from tests.support.server import s3_client, service_client

KEYS = TRICKY_KEYS


@pytest.fixture
def clients(events_url: str) -> Any:
    s3, sqs = s3_client(events_url), sqs_client(events_url)
    s3.create_bucket(Bucket="lake")
    yield s3, sqs
    s3.close()
    sqs.close()


def test_s3_to_sqs_delivers_every_key_exactly(events_url: str, clients: Any) -> None:
    s3, sqs = clients
    queue_url, queue_arn = make_queue(sqs, "lake-events")
    s3.put_bucket_notification_configuration(
        Bucket="lake",
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}},
                }
            ]
        },
    )
    for key in [*KEYS, "out/not-ours.csv"]:
        s3.put_object(Bucket="lake", Key=key, Body=key.encode())
    with running_inbox(events_url, queue_url, prefix="in/") as inbox:
        found = collect(inbox, len(KEYS))
        assert sorted(ref.key for r in found for ref in r.todo) == sorted(KEYS)
        events = [e for r in found for e in r.events]
        assert {e.action for e in events} == {"created"}
        assert {e.route for e in events} == {"s3"}
        # The size and ETag the event names are the object's.
        for event in events:
            head = s3.head_object(Bucket="lake", Key=event.key)
            assert event.size == head["ContentLength"]
            assert event.etag == head["ETag"].strip('"')
        for r in found:
            for ref in r.todo:
                inbox.settled(ref, "done")
        # The test event S3 sends when the configuration is saved is acknowledged too.
        wait_for(lambda: inbox.counters().deleted == len(KEYS) + 1, what="every delete")
        assert inbox.counters().test_events == 1
        assert inbox.counters().bad == 0
    assert peek(sqs, queue_url) == []  # the prefix filter kept out/ away


@pytest.mark.parametrize("raw", [False, True], ids=["enveloped", "raw"])
def test_s3_to_sns_to_sqs(events_url: str, clients: Any, raw: bool) -> None:
    s3, sqs = clients
    sns = service_client("sns", events_url)
    topic = sns.create_topic(Name="lake-topic")["TopicArn"]
    queue_url, queue_arn = make_queue(sqs, "lake-fanout")
    attributes = {"RawMessageDelivery": "true"} if raw else {}
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
    s3.put_bucket_notification_configuration(
        Bucket="lake",
        NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    for key in KEYS:
        s3.put_object(Bucket="lake", Key=key, Body=b"x")
    with running_inbox(events_url, queue_url, prefix="in/") as inbox:
        found = collect(inbox, len(KEYS))
        assert sorted(ref.key for r in found for ref in r.todo) == sorted(KEYS)
        assert {e.route for r in found for e in r.events} == {"s3" if raw else "sns"}
        for r in found:
            for ref in r.todo:
                inbox.settled(ref, "done")
        wait_for(lambda: inbox.counters().deleted == len(KEYS) + 1, what="every delete")
        assert inbox.counters().test_events == 1
    sns.close()


def test_s3_to_eventbridge_to_sqs_on_moto(s3_url: str, s3: Any) -> None:
    sqs = sqs_client(s3_url)
    events = service_client("events", s3_url)
    s3.create_bucket(Bucket="lake")
    queue_url, queue_arn = make_queue(sqs, "lake-bridge")
    events.put_rule(
        Name="lake-created",
        EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}),
    )
    events.put_targets(Rule="lake-created", Targets=[{"Id": "queue", "Arn": queue_arn}])
    s3.put_bucket_notification_configuration(
        Bucket="lake", NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    for key in KEYS:
        s3.put_object(Bucket="lake", Key=key, Body=b"x")
    with running_inbox(s3_url, queue_url, prefix="in/") as inbox:
        found = collect(inbox, len(KEYS))
        assert sorted(ref.key for r in found for ref in r.todo) == sorted(KEYS)
        assert {e.route for r in found for e in r.events} == {"eventbridge"}
        for r in found:
            for ref in r.todo:
                inbox.settled(ref, "done")
        wait_for(lambda: inbox.counters().deleted == len(KEYS), what="every delete")
    sqs.close()
    events.close()


def test_each_server_sends_what_we_documented(events_url: str, clients: Any) -> None:
    """What the README says each server puts in a record, checked against the server."""
    s3, sqs = clients
    queue_url, queue_arn = make_queue(sqs, "lake-raw")
    s3.put_bucket_notification_configuration(
        Bucket="lake",
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    s3.put_object(Bucket="lake", Key="in/a b+c.csv", Body=b"x")
    seen: dict[str, str] = {}
    wait_for(
        lambda: (
            seen.update((m["MessageId"], m["Body"]) for m in peek(sqs, queue_url, 1))
            or len(seen) >= 2
        ),
        what="the test event and the record",
    )
    bodies = list(seen.values())
    parsed = [parse_message(body) for body in bodies]
    assert any(isinstance(p, TestEvent) and p.bucket == "lake" for p in parsed)
    [event] = [e for p in parsed if isinstance(p, tuple) for e in p]
    assert isinstance(event, ObjectEvent)
    assert event.key == "in/a b+c.csv"
    raw_key = next(
        json.loads(b)["Records"][0]["s3"]["object"]["key"] for b in bodies if "Records" in b
    )
    # moto form-encodes (and escapes '/'), LocalStack path-encodes (%20 for a space); AWS
    # form-encodes and leaves '/': unquote_plus reads all three.
    assert raw_key in ("in%2Fa+b%2Bc.csv", "in/a%20b%2Bc.csv")
