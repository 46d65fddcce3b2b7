"""What the inbox hands the watch loop: received batches, notes worth a log line, counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from s3drain.events.messages import ObjectEvent
from s3drain.events.tracker import Message, ObjectRef

NoteKind = Literal["bad", "test", "ignored", "left", "visibility-lost", "delete-failed"]


@dataclass(frozen=True)
class Received:
    """One message and what it names. `todo` are the objects the loop must drain now: in
    scope, created, and not already in flight under another message."""

    message: Message
    events: tuple[ObjectEvent, ...]
    todo: tuple[ObjectRef, ...]


@dataclass(frozen=True)
class Note:
    """Something worth one log line; the inbox never prints."""

    kind: NoteKind
    message_id: str
    detail: str


@dataclass(frozen=True)
class InboxCounters:
    received: int  # messages received (one received twice counts twice)
    deleted: int
    left: int  # let go undeleted after an object failed: back after the visibility timeout
    bad: int  # distinct messages that are not S3 events, left for the dead-letter queue
    test_events: int
    ignored: int  # records for another bucket or outside the prefix
    released: int  # made visible again at a stop
    visibility_lost: int  # the heartbeat could not extend them (another consumer has them)
    delete_failed: int
    in_flight: int  # messages held now
    oldest_age: float | None  # seconds since the oldest held message was sent
