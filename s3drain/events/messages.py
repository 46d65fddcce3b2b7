"""An SQS message body -> the S3 objects it names. Pure: no I/O, no clock.

Three routes bring S3 events into a queue, and each wraps them differently:

- S3 -> SQS: the body is S3's own `{"Records": [...]}`; the key is form-encoded (`+` for a
  space, `%2B` for a `+`), so it goes through `unquote_plus` exactly once.
- S3 -> SNS -> SQS: the body is SNS's envelope `{"Type": "Notification", "Message": "<S3's
  body as a JSON string>"}`; with raw message delivery on, it is S3's body itself.
- S3 -> EventBridge -> SQS: the body is an EventBridge event (`"source": "aws.s3"`,
  `"detail-type": "Object Created"`). Its `detail.object.key` is the key as it is, not
  encoded: consumers that decoded it broke on keys with `+` (e.g. the fix in
  aws-solutions-library-samples/guidance-for-medialake-on-aws#21, tested with keys such as
  `%2B%20%%%.png`), and moto sends it raw too.

Anything else (bad JSON, another producer's payload, a record that lacks its bucket or key) is
a `BadMessage` with the reason, and the whole message is left to the queue's redrive policy:
a message is never deleted on the strength of a record that could not be read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

Action = Literal["created", "removed", "other"]
Route = Literal["s3", "sns", "eventbridge"]

# The event major version S3 documents; AWS asks consumers to compare the major for equality.
EVENT_MAJOR_VERSION = "2"
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
# EventBridge's detail-types for the two actions a drain cares about; the rest (restores,
# tags, ACLs, storage class) name an object whose bytes did not change.
_EVENTBRIDGE_ACTIONS: dict[str, Action] = {
    "Object Created": "created",
    "Object Deleted": "removed",
}


@dataclass(frozen=True)
class ObjectEvent:
    """One S3 event about one object, decoded.

    `action` is what a drain does with it: `created` names an object to drain (a hint: the
    watcher asks S3 for the current object before deciding); `removed` names an object that
    left S3, so there is nothing to download and it is settled at once; `other` (tagging, ACL,
    restore, lifecycle transition, replication) changed no bytes and is settled at once too.
    """

    bucket: str
    key: str
    action: Action
    event_name: str  # S3's own name without "s3:" (ObjectCreated:Put), or EventBridge's reason
    route: Route
    event_time: datetime | None = None
    sequencer: str | None = None
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None


@dataclass(frozen=True)
class TestEvent:
    """S3's `s3:TestEvent`, sent when a notification configuration is saved."""

    __test__ = False  # not a pytest test class, whatever its name says

    bucket: str
    time: datetime | None


@dataclass(frozen=True)
class BadMessage:
    """Not an S3 event this watcher can read; `reason` is one line for the log."""

    reason: str


Parsed = tuple[ObjectEvent, ...] | TestEvent | BadMessage


class _Bad(Exception):
    """A reason to call the whole message bad, raised from deep inside a record."""


def parse_message(body: str) -> Parsed:
    """An SQS message body -> its object events (S3 or EventBridge, bare or in SNS's
    envelope), a TestEvent, or a BadMessage."""
    try:
        return _parse(_load(body), inside_sns=False)
    except _Bad as bad:
        return BadMessage(str(bad))


def _load(text: str) -> Mapping[str, Any]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise _Bad("the body is not JSON") from None
    if not isinstance(document, dict):
        raise _Bad(f"the body is a JSON {type(document).__name__}, not an object")
    return document


def _parse(document: Mapping[str, Any], *, inside_sns: bool) -> Parsed:
    if "Records" in document:
        return _s3_records(document["Records"], route="sns" if inside_sns else "s3")
    if document.get("Event") == "s3:TestEvent":
        return TestEvent(_text(document, "Bucket", "the test event"), _time(document.get("Time")))
    if document.get("source") == "aws.s3" and "detail-type" in document:
        return (_eventbridge(document),)
    sns_type = document.get("Type")
    if sns_type == "Notification" and "Message" in document and not inside_sns:
        message = document["Message"]
        if not isinstance(message, str):
            raise _Bad("the SNS envelope's Message is not a string")
        return _parse(_load(message), inside_sns=True)
    if sns_type == "SubscriptionConfirmation":
        raise _Bad(
            "an SNS SubscriptionConfirmation: confirm the subscription (its SubscribeURL), "
            "the watcher does not"
        )
    raise _Bad("not an S3 event (no Records, no s3:TestEvent, no aws.s3 EventBridge event)")


def _s3_records(records: object, route: Route) -> tuple[ObjectEvent, ...]:
    if not isinstance(records, list) or not records:
        raise _Bad("Records is not a non-empty list")
    return tuple(_s3_record(record, index, route) for index, record in enumerate(records))


def _s3_record(record: object, index: int, route: Route) -> ObjectEvent:
    where = f"record {index}"
    if not isinstance(record, dict):
        raise _Bad(f"{where} is not an object")
    source = record.get("eventSource")
    # aws:s3 from AWS; S3-compatible servers that copy the format say minio:s3, ceph:s3.
    if not isinstance(source, str) or not source.endswith(":s3"):
        raise _Bad(f"{where} is not from S3 (eventSource {source!r})")
    version = record.get("eventVersion")
    if version is not None and str(version).split(".", 1)[0] != EVENT_MAJOR_VERSION:
        raise _Bad(f"{where} has eventVersion {version!r}; this watcher reads 2.x")
    name = _text(record, "eventName", where).removeprefix("s3:")
    s3 = _mapping(record, "s3", where)
    bucket = _text(_mapping(s3, "bucket", where), "name", f"{where}'s bucket")
    obj = _mapping(s3, "object", where)
    return ObjectEvent(
        bucket=bucket,
        key=decode_s3_key(_text(obj, "key", f"{where}'s object"), where),
        action=_s3_action(name),
        event_name=name,
        route=route,
        event_time=_time(record.get("eventTime")),
        sequencer=_sequencer(obj.get("sequencer")),
        size=_size(obj.get("size")),
        etag=_etag(obj.get("eTag")),
        version_id=_optional_text(obj.get("versionId")),
    )


def _eventbridge(document: Mapping[str, Any]) -> ObjectEvent:
    where = "the EventBridge event"
    detail = _mapping(document, "detail", where)
    detail_type = _text(document, "detail-type", where)
    obj = _mapping(detail, "object", where)
    key = _text(obj, "key", f"{where}'s object")  # not encoded: see the module docstring
    if key == "":
        raise _Bad(f"{where} names an empty key")
    reason = detail.get("reason")
    return ObjectEvent(
        bucket=_text(_mapping(detail, "bucket", where), "name", f"{where}'s bucket"),
        key=key,
        action=_EVENTBRIDGE_ACTIONS.get(detail_type, "other"),
        event_name=reason if isinstance(reason, str) and reason else detail_type,
        route="eventbridge",
        event_time=_time(document.get("time")),
        sequencer=_sequencer(obj.get("sequencer")),
        size=_size(obj.get("size")),
        etag=_etag(obj.get("etag")),
        version_id=_optional_text(obj.get("version-id")),
    )


def _s3_action(event_name: str) -> Action:
    if event_name.startswith("ObjectCreated:"):
        return "created"
    # LifecycleExpiration:Delete and :DeleteMarkerCreated remove the object just as a DELETE.
    if event_name.startswith(("ObjectRemoved:", "LifecycleExpiration:")):
        return "removed"
    return "other"


def decode_s3_key(encoded: str, where: str = "the record") -> str:
    """A key as S3 puts it in a notification (form-encoded: `+` is a space, `%2B` a `+`,
    `%25` a `%`, UTF-8 bytes as %XX) -> the key. Decoded once: a key that itself contains
    `%41` arrives as `%2541` and must come back as `%41`, not `A`."""
    try:
        key = unquote_plus(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _Bad(f"{where}'s key {encoded!r} does not decode to UTF-8") from None
    if key == "":
        raise _Bad(f"{where} names an empty key")
    return key


def compare_sequencers(a: str, b: str) -> int:
    """-1, 0 or 1 as event `a` happened before, with, or after event `b` (same key only).

    S3: "The sequencers can be of different lengths. So, to compare these values, first right
    pad the shorter value with zeros, and then do a lexicographical comparison."
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html)
    Case is folded first: the digits are hexadecimal, and a lexicographic comparison of "a"
    and "B" would otherwise invert their order.
    """
    for text in (a, b):
        if not _HEX.match(text):
            raise ValueError(f"sequencer {text!r} is not hexadecimal")
    width = max(len(a), len(b))
    left, right = a.upper().ljust(width, "0"), b.upper().ljust(width, "0")
    return (left > right) - (left < right)


def _mapping(parent: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise _Bad(f"{where} has no {name!r} object")
    return value


def _text(parent: Mapping[str, Any], name: str, where: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or value == "":
        raise _Bad(f"{where} has no {name!r}")
    return value


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: object) -> datetime | None:
    # Only for the upload-to-delivery figure: an unreadable time costs that figure, nothing more.
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _sequencer(value: object) -> str | None:
    return value if isinstance(value, str) and _HEX.match(value) else None


def _size(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _etag(value: object) -> str | None:
    return value.strip('"') or None if isinstance(value, str) else None


def in_scope(event: ObjectEvent, bucket: str, prefix: str) -> bool:
    """Whether the event names an object this drain owns. A record for another bucket or
    outside the prefix is settled without any S3 request: see "Drain on events" in the
    README for why it is acknowledged rather than left in the queue."""
    return event.bucket == bucket and event.key.startswith(prefix)
