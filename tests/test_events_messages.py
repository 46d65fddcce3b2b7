"""events/messages.py: every route S3 events take into a queue, key decoding, sequencers."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from s3drain.events.messages import (
    BadMessage,
    ObjectEvent,
    TestEvent,
    compare_sequencers,
    decode_s3_key,
    in_scope,
    parse_message,
)

# Keys that break hand-written consumers: a space, a literal +, %, an already-encoded-looking
# sequence, non-ASCII, characters form encoding escapes, and a folder path.
TRICKY_KEYS = [
    "plain.csv",
    "a b.csv",
    "a+b.csv",
    "a + b.csv",
    "100%.csv",
    "%2B.csv",
    "%41%20.csv",
    "dir/sub dir/ünïcödé €.csv",
    "日本語/ファイル.csv",
    "emoji 🙂+.csv",
    "q?x=1&y=2#frag;=@:$,.csv",
    "a//b/../c",
    "trailing ",
    " leading",
    "~tilde*star'quote(paren)",
]


def aws_encode(key: str) -> str:
    """S3 -> SQS as AWS sends it: form encoding, '/' left alone."""
    return quote_plus(key, safe="/")


def moto_encode(key: str) -> str:
    """moto's S3 notifications: form encoding that also escapes '/'."""
    return quote_plus(key)


def localstack_encode(key: str) -> str:
    """LocalStack's S3 notifications: path encoding, %20 for a space."""
    return quote(key)


ENCODERS = [aws_encode, moto_encode, localstack_encode]


def s3_body(key: str, **object_fields: Any) -> str:
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-23T19:09:09.123Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": "lake", "arn": "arn:aws:s3:::lake"},
            "object": {
                "key": key,
                "size": 37,
                "eTag": "e79fe0c56d50c64f482a14681371125c",
                "sequencer": "0055AED6DCD90281E5",
                **object_fields,
            },
        },
    }
    return json.dumps({"Records": [record]})


def eventbridge_body(key: str, detail_type: str = "Object Created", **extra: Any) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": "111122223333",
            "time": "2021-11-12T00:00:00Z",
            "region": "ca-central-1",
            "resources": ["arn:aws:s3:::lake"],
            "detail": {
                "version": "0",
                "bucket": {"name": "lake"},
                "object": {
                    "key": key,
                    "size": 5,
                    "etag": "b1946ac92492d2347c6235b4d2611184",
                    "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                    "sequencer": "617f08299329d189",
                    **extra,
                },
                "reason": "PutObject",
            },
        }
    )


def sns_envelope(inner: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "378b08c8-8677-4c37-9fea-b784a77febae",
            "TopicArn": "arn:aws:sns:us-east-1:111122223333:t",
            "Subject": "Amazon S3 Notification",
            "Message": inner,
            "Timestamp": "2026-11-23T19:09:09.200Z",
        }
    )


def only_event(parsed: object) -> ObjectEvent:
    assert isinstance(parsed, tuple), parsed
    assert len(parsed) == 1
    event = parsed[0]
    assert isinstance(event, ObjectEvent)
    return event


# --- S3 -> SQS


def test_s3_record_becomes_an_object_event_with_every_field() -> None:
    event = only_event(parse_message(s3_body("exports/a+b.csv", versionId="v1")))
    assert event == ObjectEvent(
        bucket="lake",
        key="exports/a b.csv",
        action="created",
        event_name="ObjectCreated:Put",
        route="s3",
        event_time=datetime(2026, 11, 23, 19, 9, 9, 123000, tzinfo=UTC),
        sequencer="0055AED6DCD90281E5",
        size=37,
        etag="e79fe0c56d50c64f482a14681371125c",
        version_id="v1",
    )


@pytest.mark.parametrize("key", TRICKY_KEYS)
@pytest.mark.parametrize("encode", ENCODERS, ids=lambda f: f.__name__)
def test_tricky_keys_round_trip_through_every_servers_encoding(key: str, encode: Any) -> None:
    assert only_event(parse_message(s3_body(encode(key)))).key == key


def test_the_classic_bugs_are_not_made() -> None:
    # '+' is a space; a literal '+' arrives as %2B; decoding happens once, not twice.
    assert decode_s3_key("a+b") == "a b"
    assert decode_s3_key("a%2Bb") == "a+b"
    assert decode_s3_key("100%25") == "100%"
    assert decode_s3_key("%2541") == "%41"
    assert decode_s3_key("%C3%A9t%C3%A9") == "été"


def _random_key(rng: random.Random) -> str:
    pool = "abcXYZ019 +%/._-~!*'()&=?#;:@$,[]{}|^`\"<>\\\u00e9\u20ac\u65e5\U0001f642\t"
    length = rng.randint(1, 40)
    return "".join(rng.choice(pool) for _ in range(length))


@pytest.mark.parametrize("encode", ENCODERS, ids=lambda f: f.__name__)
def test_random_keys_round_trip(encode: Any) -> None:
    rng = random.Random(20)
    for _ in range(3000):
        key = _random_key(rng)
        assert decode_s3_key(encode(key)) == key, key


def test_random_keys_round_trip_through_the_whole_parse() -> None:
    rng = random.Random(21)
    for _ in range(500):
        key = _random_key(rng)
        assert only_event(parse_message(s3_body(aws_encode(key)))).key == key
        assert only_event(parse_message(sns_envelope(s3_body(aws_encode(key))))).key == key
        assert only_event(parse_message(eventbridge_body(key))).key == key


def test_a_key_whose_bytes_are_not_utf8_is_a_bad_message() -> None:
    parsed = parse_message(s3_body("caf%E9"))
    assert isinstance(parsed, BadMessage)
    assert "UTF-8" in parsed.reason


@pytest.mark.parametrize(
    ("event_name", "action"),
    [
        ("ObjectCreated:Put", "created"),
        ("ObjectCreated:Post", "created"),
        ("ObjectCreated:Copy", "created"),
        ("ObjectCreated:CompleteMultipartUpload", "created"),
        ("s3:ObjectCreated:Put", "created"),  # MinIO keeps the s3: prefix
        ("ObjectRemoved:Delete", "removed"),
        ("ObjectRemoved:DeleteMarkerCreated", "removed"),
        ("LifecycleExpiration:Delete", "removed"),
        ("ObjectTagging:Put", "other"),
        ("ObjectRestore:Completed", "other"),
        ("ObjectAcl:Put", "other"),
        ("Replication:OperationFailedReplication", "other"),
    ],
)
def test_event_names_map_to_what_a_drain_does(event_name: str, action: str) -> None:
    body = json.loads(s3_body("k"))
    body["Records"][0]["eventName"] = event_name
    event = only_event(parse_message(json.dumps(body)))
    assert event.action == action
    assert event.event_name == event_name.removeprefix("s3:")


def test_several_records_in_one_message_are_all_returned_in_order() -> None:
    body = json.loads(s3_body("one"))
    second = json.loads(s3_body("two"))["Records"][0]
    body["Records"].append(second)
    parsed = parse_message(json.dumps(body))
    assert isinstance(parsed, tuple)
    assert [e.key for e in parsed] == ["one", "two"]


def test_removal_records_have_no_size_and_that_is_fine() -> None:
    body = json.loads(s3_body("k"))
    body["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    del body["Records"][0]["s3"]["object"]["size"]
    del body["Records"][0]["s3"]["object"]["eTag"]
    event = only_event(parse_message(json.dumps(body)))
    assert (event.action, event.size, event.etag) == ("removed", None, None)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"size": "42"}, {"size": 42}),
        ({"size": -1}, {"size": None}),
        ({"size": True}, {"size": None}),
        ({"size": 1.5}, {"size": None}),
        ({"eTag": '"abc"'}, {"etag": "abc"}),
        ({"eTag": ""}, {"etag": None}),
        ({"sequencer": "not hex"}, {"sequencer": None}),
        ({"sequencer": 12}, {"sequencer": None}),
        ({"versionId": None}, {"version_id": None}),
        ({"versionId": "null"}, {"version_id": "null"}),
    ],
)
def test_optional_fields_are_read_leniently(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    event = only_event(parse_message(s3_body("k", **fields)))
    for name, value in expected.items():
        assert getattr(event, name) == value


@pytest.mark.parametrize("when", ["yesterday", 12, "2026-13-45T00:00:00Z"])
def test_an_unreadable_event_time_costs_only_the_time(when: object) -> None:
    body = json.loads(s3_body("k"))
    body["Records"][0]["eventTime"] = when
    assert only_event(parse_message(json.dumps(body))).event_time is None


def test_a_time_without_a_zone_is_utc() -> None:
    body = json.loads(s3_body("k"))
    body["Records"][0]["eventTime"] = "2026-11-23T19:09:09"
    assert only_event(parse_message(json.dumps(body))).event_time == datetime(
        2026, 11, 23, 19, 9, 9, tzinfo=UTC
    )


# --- S3 -> SNS -> SQS


def test_sns_envelope_is_opened_and_the_route_says_so() -> None:
    event = only_event(parse_message(sns_envelope(s3_body("a+b"))))
    assert (event.key, event.route, event.bucket) == ("a b", "sns", "lake")


def test_sns_raw_delivery_is_s3s_body_itself() -> None:
    event = only_event(parse_message(s3_body("a+b")))
    assert (event.key, event.route) == ("a b", "s3")


def test_a_test_event_inside_sns_is_a_test_event() -> None:
    test = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2014-10-13T15:57:02.089Z"}
    parsed = parse_message(sns_envelope(json.dumps({**test, "Bucket": "lake"})))
    assert parsed == TestEvent("lake", datetime(2014, 10, 13, 15, 57, 2, 89000, tzinfo=UTC))


def test_sns_subscription_confirmation_is_bad_and_says_what_to_do() -> None:
    parsed = parse_message(json.dumps({"Type": "SubscriptionConfirmation", "Message": "x"}))
    assert isinstance(parsed, BadMessage)
    assert "SubscribeURL" in parsed.reason


def test_an_envelope_inside_an_envelope_is_not_opened() -> None:
    parsed = parse_message(sns_envelope(sns_envelope(s3_body("k"))))
    assert isinstance(parsed, BadMessage)


def test_an_envelope_whose_message_is_not_a_string_is_bad() -> None:
    parsed = parse_message(json.dumps({"Type": "Notification", "Message": {"Records": []}}))
    assert isinstance(parsed, BadMessage)


# --- S3 -> EventBridge -> SQS


def test_eventbridge_object_created_keeps_its_key_as_it_is() -> None:
    event = only_event(parse_message(eventbridge_body("dir/a+b %2B.csv")))
    assert event == ObjectEvent(
        bucket="lake",
        key="dir/a+b %2B.csv",
        action="created",
        event_name="PutObject",
        route="eventbridge",
        event_time=datetime(2021, 11, 12, tzinfo=UTC),
        sequencer="617f08299329d189",
        size=5,
        etag="b1946ac92492d2347c6235b4d2611184",
        version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
    )


@pytest.mark.parametrize(
    ("detail_type", "action"),
    [
        ("Object Created", "created"),
        ("Object Deleted", "removed"),
        ("Object Restore Completed", "other"),
        ("Object Tags Added", "other"),
        ("Object Storage Class Changed", "other"),
    ],
)
def test_eventbridge_detail_types(detail_type: str, action: str) -> None:
    assert only_event(parse_message(eventbridge_body("k", detail_type))).action == action


def test_eventbridge_without_a_reason_names_the_detail_type() -> None:
    body = json.loads(eventbridge_body("k"))
    del body["detail"]["reason"]
    assert only_event(parse_message(json.dumps(body))).event_name == "Object Created"


# --- s3:TestEvent


def test_test_event() -> None:
    body = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2014-10-13T15:57:02.089Z",
        "Bucket": "bucketname",
        "RequestId": "5582815E1AEA5ADF",
    }
    parsed = parse_message(json.dumps(body))
    assert parsed == TestEvent("bucketname", datetime(2014, 10, 13, 15, 57, 2, 89000, tzinfo=UTC))


# --- bad messages: every one says why


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "not JSON"),
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON list"),
        ('"just a string"', "JSON str"),
        ("{}", "not an S3 event"),
        ('{"hello": "world"}', "not an S3 event"),
        ('{"Records": []}', "non-empty list"),
        ('{"Records": {"a": 1}}', "non-empty list"),
        ('{"Records": [1]}', "record 0 is not an object"),
        ('{"Records": [{"eventSource": "aws:dynamodb"}]}', "not from S3"),
        ('{"Records": [{"eventSource": "aws:s3", "eventVersion": "3.0"}]}', "eventVersion"),
        ('{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}', "'s3'"),
        ('{"Event": "s3:TestEvent"}', "'Bucket'"),
        ('{"source": "aws.s3", "detail-type": "Object Created"}', "'detail'"),
        ('{"source": "aws.s3", "detail-type": "Object Created", "detail": {}}', "'object'"),
    ],
)
def test_bad_messages_say_why(body: str, reason: str) -> None:
    parsed = parse_message(body)
    assert isinstance(parsed, BadMessage)
    assert reason in parsed.reason


@pytest.mark.parametrize("missing", ["bucket", "key", "eventName"])
def test_a_record_without_its_bucket_key_or_name_is_bad(missing: str) -> None:
    body = json.loads(s3_body("k"))
    record = body["Records"][0]
    if missing == "bucket":
        del record["s3"]["bucket"]["name"]
    elif missing == "key":
        record["s3"]["object"]["key"] = ""
    else:
        del record["eventName"]
    assert isinstance(parse_message(json.dumps(body)), BadMessage)


def test_one_bad_record_makes_the_whole_message_bad() -> None:
    # The good record's object is not lost: it stays in S3 for the reconcile pass.
    body = json.loads(s3_body("good"))
    body["Records"].append({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"})
    parsed = parse_message(json.dumps(body))
    assert isinstance(parsed, BadMessage)
    assert "record 1" in parsed.reason


def test_an_eventbridge_event_with_an_empty_key_is_bad() -> None:
    assert isinstance(parse_message(eventbridge_body("")), BadMessage)


def test_deeply_nested_json_is_bad_not_a_crash() -> None:
    assert isinstance(parse_message("[" * 100_000 + "]" * 100_000), BadMessage)


def test_the_minio_source_and_versionless_records_are_read() -> None:
    body = json.loads(s3_body("k"))
    body["Records"][0]["eventSource"] = "minio:s3"
    del body["Records"][0]["eventVersion"]
    assert only_event(parse_message(json.dumps(body))).key == "k"


# --- sequencers


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E5", 0),
        ("0055AED6DCD90281E5", "0055AED6DCD90281E6", -1),
        ("0055AED6DCD90281E6", "0055AED6DCD90281E5", 1),
        # Different lengths: the shorter is right-padded with zeros, then compared.
        ("0055AED6DCD90281E5", "0055AED6DCD90281E500", 0),
        ("0055AED6DCD90281E5", "0055AED6DCD90281E501", -1),
        ("0055AED6DCD90281E6", "0055AED6DCD90281E5FF", 1),
        ("1", "0FFFFFFF", 1),  # as numbers 1 < 0x0FFFFFFF; as S3 orders them, later
        ("617f08299329d189", "617F08299329D189", 0),
        ("617f0837b476e463", "617F08299329D189", 1),
    ],
)
def test_compare_sequencers(a: str, b: str, expected: int) -> None:
    assert compare_sequencers(a, b) == expected
    assert compare_sequencers(b, a) == -expected


def test_compare_sequencers_orders_like_sorting_padded_values() -> None:
    rng = random.Random(5)
    values = ["".join(rng.choice("0123456789ABCDEF") for _ in range(rng.randint(1, 20)))]
    values += ["".join(rng.choice("0123456789abcdef") for _ in range(rng.randint(1, 20)))]
    for _ in range(200):
        values.append("".join(rng.choice("0123456789ABCDEF") for _ in range(rng.randint(1, 20))))
    width = max(map(len, values))
    padded = sorted(values, key=lambda v: v.upper().ljust(width, "0"))
    for earlier, later in itertools.pairwise(padded):
        assert compare_sequencers(earlier, later) <= 0


@pytest.mark.parametrize("bad", ["", "xyz", "12 34", "0x12"])
def test_compare_sequencers_refuses_what_is_not_hex(bad: str) -> None:
    with pytest.raises(ValueError, match="not hexadecimal"):
        compare_sequencers(bad, "00")


# --- scope


@pytest.mark.parametrize(
    ("bucket", "key", "expected"),
    [
        ("lake", "exports/a.csv", True),
        ("lake", "exports/", True),
        ("lake", "export/a.csv", False),
        ("other", "exports/a.csv", False),
        ("lake", "Exports/a.csv", False),
    ],
)
def test_in_scope(bucket: str, key: str, expected: bool) -> None:
    event = ObjectEvent(bucket, key, "created", "ObjectCreated:Put", "s3")
    assert in_scope(event, "lake", "exports/") is expected


def test_the_whole_bucket_is_in_scope_of_an_empty_prefix() -> None:
    assert in_scope(ObjectEvent("lake", "x", "created", "n", "s3"), "lake", "")
