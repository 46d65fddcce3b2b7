"""Which messages wait for which objects: the bookkeeping that decides when a message may leave
the queue. No SQS calls, no threads of its own; the inbox (`inbox.py`) holds the lock.

A message leaves the queue only when every object it names is settled. SQS delivers at least
once and S3 may send one event twice, so one object version can be named by several messages:
they all wait for the one settlement, and only the first of them asks for the object to be
drained. A newer version of the same key is another object (another `ObjectRef`), drained and
settled on its own, so a message is never deleted on the strength of an older version's drain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from s3drain.events.messages import ObjectEvent

# done: delivered and deleted, already gone, superseded by a newer version, or left in S3
# with its reason in the audit log; the message may be deleted. retry: a step failed; the
# message is left to come back after its visibility timeout (and to the dead-letter queue
# after the queue's maxReceiveCount).
Outcome = Literal["done", "retry"]
Verdict = Literal["delete", "leave"]


@dataclass(frozen=True)
class Message:
    """One received SQS message. `receipt_handle` is this receive's: SQS gives a new one each
    time a message is received, and only the latest is sure to work."""

    message_id: str
    receipt_handle: str
    body: str
    sent_at: float | None  # SentTimestamp, epoch seconds: the age of the oldest message
    receive_count: int  # ApproximateReceiveCount: 1 the first time
    received_at: float  # monotonic clock, when this receive returned


@dataclass(frozen=True)
class ObjectRef:
    """One object version an event names: equal for duplicates of one event, different for a
    newer upload to the same key."""

    bucket: str
    key: str
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None

    @classmethod
    def of(cls, event: ObjectEvent) -> ObjectRef:
        return cls(event.bucket, event.key, event.etag, event.version_id, event.sequencer)


@dataclass
class _Held:
    message: Message
    pending: set[ObjectRef] = field(default_factory=set)
    failed: bool = False
    verdict: Verdict | None = None  # set once nothing is pending
    visible_until: float = 0.0  # monotonic: when SQS hands it to someone else


@dataclass(frozen=True)
class Admitted:
    """What `add` did with a message: `todo` are the refs to drain now (not already in flight
    under another message); `verdict` is set when nothing in it needs waiting for."""

    todo: tuple[ObjectRef, ...]
    verdict: Verdict | None
    again: bool  # the message was already held (received again): nothing new to do


class Tracker:
    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self._waiting: dict[ObjectRef, set[str]] = {}

    def add(
        self, message: Message, to_drain: Iterable[ObjectEvent], visible_until: float
    ) -> Admitted:
        held = self._held.get(message.message_id)
        if held is not None:
            # Received again (its visibility ran out): the newest receipt handle is the one
            # that deletes it; what it names is already being waited for.
            held.message = message
            held.visible_until = visible_until
            return Admitted((), held.verdict, again=True)
        held = _Held(message, visible_until=visible_until)
        self._held[message.message_id] = held
        todo: list[ObjectRef] = []
        for event in to_drain:
            ref = ObjectRef.of(event)
            if ref in held.pending:
                continue  # one message naming one object twice
            held.pending.add(ref)
            waiting = self._waiting.setdefault(ref, set())
            if not waiting:
                todo.append(ref)
            waiting.add(message.message_id)
        if not held.pending:
            held.verdict = "delete"
        return Admitted(tuple(todo), held.verdict, again=False)

    def settle(self, ref: ObjectRef, outcome: Outcome) -> list[tuple[Message, Verdict]]:
        """The object is settled: the messages that now wait for nothing, with their verdict."""
        finished: list[tuple[Message, Verdict]] = []
        for message_id in sorted(self._waiting.pop(ref, ())):
            held = self._held.get(message_id)
            if held is None:
                continue
            held.pending.discard(ref)
            held.failed = held.failed or outcome == "retry"
            if not held.pending and held.verdict is None:
                held.verdict = "leave" if held.failed else "delete"
                finished.append((held.message, held.verdict))
        return finished

    def forget(self, message_id: str) -> Message | None:
        """The message left our hands (deleted, left, released): stop holding it."""
        held = self._held.pop(message_id, None)
        if held is None:
            return None
        for ref in held.pending:
            waiting = self._waiting.get(ref)
            if waiting is not None:
                waiting.discard(message_id)
                if not waiting:
                    del self._waiting[ref]
        return held.message

    def message(self, message_id: str) -> Message | None:
        """The message as last received (its newest receipt handle), if still held."""
        held = self._held.get(message_id)
        return None if held is None else held.message

    def leaving(self, message_id: str) -> bool:
        """No longer held, or held only until its delete (or release) is through."""
        held = self._held.get(message_id)
        return held is None or held.verdict is not None

    def extended(self, message_id: str, visible_until: float) -> None:
        held = self._held.get(message_id)
        if held is not None:
            held.visible_until = visible_until

    def due(self, before: float) -> list[Message]:
        """Held messages whose visibility ends before `before` and that still matter: not
        left (a failed one is let go on purpose)."""
        return [
            h.message
            for h in self._held.values()
            if h.visible_until < before and h.verdict != "leave"
        ]

    def unfinished(self) -> list[Message]:
        """Every message held and not on its way out of the queue: what a stop releases."""
        return [h.message for h in self._held.values() if h.verdict is None]

    def pending(self, message_id: str) -> frozenset[ObjectRef]:
        """The objects a held message still waits for."""
        held = self._held.get(message_id)
        return frozenset() if held is None else frozenset(held.pending)

    def pending_refs(self) -> int:
        return len(self._waiting)

    def __len__(self) -> int:
        return len(self._held)

    def oldest_sent(self) -> float | None:
        sent = [h.message.sent_at for h in self._held.values() if h.message.sent_at is not None]
        return min(sent) if sent else None


class AfterRelease:
    """Messages a stop made visible again while the run still had objects they name in hand (a
    delivered object whose delete waits for its batch, say). The run finishes those objects; a
    message whose objects all end done is deleted after all, so it does not bring a finished
    object to the next watcher and add to its receive count on the way to a dead-letter queue.
    One whose object failed or was cut short stays released."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Message, set[ObjectRef]]] = {}
        self._due: dict[str, Message] = {}  # settled as done: waiting for their delete

    def remember(self, message: Message, pending: Iterable[ObjectRef]) -> None:
        refs = set(pending)
        if refs:
            self._held[message.message_id] = (message, refs)

    def received_again(self, message: Message) -> None:
        """Handed back once more after the stop: its newest handle is the one that deletes it."""
        if message.message_id in self._held:
            self._held[message.message_id] = (message, self._held[message.message_id][1])

    def taken_again(self, message_id: str) -> None:
        """Held anew (received before the stop, admitted after it): that hold settles it."""
        self._held.pop(message_id, None)

    def settle(self, ref: ObjectRef, outcome: Outcome) -> list[str]:
        """The ids of the messages to delete now that `ref` is settled (`take` gives each)."""
        ready: list[str] = []
        for message_id, (message, pending) in list(self._held.items()):
            if ref not in pending:
                continue
            if outcome == "retry":
                del self._held[message_id]
                continue
            pending.discard(ref)
            if not pending:
                del self._held[message_id]
                self._due[message_id] = message
                ready.append(message_id)
        return ready

    def take(self, message_id: str) -> Message | None:
        """A message `settle` named, as released (or received again since): once."""
        return self._due.pop(message_id, None)
