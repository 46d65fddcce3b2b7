"""What one received message means for the inbox, before anything is held: not an S3 event
(noted once per message id, never deleted), S3's test event, or events, of which those in the
drain's scope and created are to be drained and the rest acknowledged (noted as ignored).

The inbox (`inbox.py`) applies the answer under its lock: counts, notes, the tracker."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from s3drain.events.messages import BadMessage, ObjectEvent, Parsed, TestEvent, in_scope
from s3drain.events.report import NoteKind

_SEEN_BAD = 10_000  # message ids remembered so a bad message is logged once, not per receive


@dataclass(frozen=True)
class Admission:
    kind: Literal["bad", "test", "events"]
    events: tuple[ObjectEvent, ...] = ()  # all the message named ("events")
    to_drain: tuple[ObjectEvent, ...] = ()  # in scope and created
    notes: tuple[tuple[NoteKind, str], ...] = ()  # (kind, detail) worth a log line each
    counts: dict[str, int] = field(default_factory=dict)  # the inbox's counters to raise


class Admitter:
    """Not thread-safe: the inbox calls it under its lock (it remembers bad message ids)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._seen_bad: OrderedDict[str, None] = OrderedDict()

    def admit(self, message_id: str, parsed: Parsed) -> Admission:
        """`parsed`: `messages.parse_message` of the body, parsed outside the inbox's lock."""
        if isinstance(parsed, BadMessage):
            if message_id in self._seen_bad:
                return Admission("bad")
            self._seen_bad[message_id] = None
            if len(self._seen_bad) > _SEEN_BAD:
                self._seen_bad.popitem(last=False)
            return Admission("bad", notes=(("bad", parsed.reason),), counts={"bad": 1})
        if isinstance(parsed, TestEvent):
            note = f"s3:TestEvent for bucket {parsed.bucket}"
            return Admission("test", notes=(("test", note),), counts={"test_events": 1})
        to_drain: list[ObjectEvent] = []
        notes: list[tuple[NoteKind, str]] = []
        for event in parsed:
            if not in_scope(event, self._bucket, self._prefix):
                named = f"{event.action} s3://{event.bucket}/{event.key}"
                notes.append(("ignored", f"{named}: not under s3://{self._bucket}/{self._prefix}"))
            elif event.action == "created":
                to_drain.append(event)
        counts = {"ignored": len(notes)} if notes else {}
        return Admission("events", tuple(parsed), tuple(to_drain), tuple(notes), counts)
