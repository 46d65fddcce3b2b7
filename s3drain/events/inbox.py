"""The watcher's side of the queue: receivers long-polling, a heartbeat keeping held messages
invisible (`heartbeat.py`), a deleter removing settled ones in batches (`message_deletes.py`),
and a stop that hands back the rest.

The watch loop calls `receive()` for batches of messages and the objects to drain, then
`settled(ref, outcome)` once per object; the inbox deletes a message when everything it names
is settled, lets it go (back after its visibility timeout) when one of its objects failed, and
on `release_unfinished()` makes every message not finished visible again at once (one whose
objects the run then finishes anyway is deleted after all).

Messages that are not S3 events are never deleted here: they are logged once per message id
and left to the queue's redrive policy (a dead-letter queue). S3's test events are deleted.
Records for another bucket or outside the prefix are acknowledged: see "Drain on events" in
the README.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from functools import partial

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.config.sqs import SqsSettings
from s3drain.errors import S3DrainError
from s3drain.events import calls
from s3drain.events.admission import Admitter
from s3drain.events.client import SQSClient
from s3drain.events.heartbeat import Heartbeat
from s3drain.events.message_deletes import THREADS as DELETE_THREADS
from s3drain.events.message_deletes import MessageDeletes
from s3drain.events.messages import parse_message
from s3drain.events.report import InboxCounters, Note, NoteKind, Received
from s3drain.events.tracker import AfterRelease, Message, ObjectRef, Outcome, Tracker, Verdict
from s3drain.s3.breaker import Breaker
from s3drain.s3.retry import RetryPolicy

_EMPTY_ANSWERS = 2  # empty answers that prove the queue drained (`Inbox.drained`)


class Inbox:
    def __init__(
        self,
        client: SQSClient,
        settings: SqsSettings,
        *,
        bucket: str,
        prefix: str,
        retry: RetryPolicy,
        breaker: Breaker,
        on_note: Callable[[Note], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        heartbeat_every: float | None = None,
        delete_window: float = 0.05,
        rest_when_drained: float = 0.0,
    ) -> None:
        if settings.queue_url is None:
            raise ValueError("the inbox needs settings.queue_url")
        self._client = client
        self._settings = settings
        self._queue_url: str = settings.queue_url
        self._breaker = breaker
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._receive_retry = replace(retry, breaker=breaker, stop_event=self._stopping)
        # Deletes and releases still go out after a stop: that is when they matter most.
        self._settle_retry = replace(retry, breaker=breaker, stop_event=None)
        self._on_note = on_note
        self._clock = clock
        self._wall = wall
        self._visibility = settings.visibility_timeout
        self._heartbeat_every = heartbeat_every or max(0.2, self._visibility / 4)
        # Re-entrant: a note's callback may ask for the counters.
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)
        self._tracker = Tracker()
        self._heartbeat = Heartbeat(
            client,
            self._queue_url,
            self._visibility,
            self._settle_retry,
            self._tracker,
            self._lock,
            on_lost=self._lost,
            clock=clock,
        )
        self._ready: queue.Queue[list[Received]] = queue.Queue()
        self._admitter = Admitter(bucket, prefix)
        # One count per field of InboxCounters, but the two read off the tracker.
        self._counts = dict.fromkeys(
            (f.name for f in fields(InboxCounters) if f.name not in ("in_flight", "oldest_age")), 0
        )
        self._after_release = AfterRelease()
        self._deletes = MessageDeletes(
            client=client,
            queue_url=self._queue_url,
            retry=self._settle_retry,
            breaker=breaker,
            tracker=self._tracker,
            after_release=self._after_release,
            counts=self._counts,
            lock=self._lock,
            room=self._room,
            note=self._note,
            fail=self._fail,
            clock=clock,
            window=delete_window,
            closed=self._closed,
        )
        self._released_ids: set[str] = set()
        self._failure: BaseException | None = None
        self._threads: list[threading.Thread] = []
        # ReceiveMessage calls started (numbered in order), the number started when the latest
        # answer with messages came, and those that answered with none since: proof the queue
        # was seen empty (an outage answers nothing at all).
        self._polls = 0
        self._mark = 0
        self._empty_since: deque[int] = deque(maxlen=8)  # the latest (the highest numbers)
        self._polling: set[int] = set()  # started, not answered yet
        # --once: a receiver that finds the queue drained and nothing held waits up to this
        # many seconds for the run's end instead of polling again at once: a poll started just
        # before the end held the stop for up to a whole long poll.
        self._rest = rest_when_drained

    # --- the loop's side

    def start(self) -> None:
        for n in range(self._settings.receivers):
            self._spawn(f"s3drain-receiver_{n}", self._receive_loop)
        for n in range(DELETE_THREADS):
            self._spawn(f"s3drain-sqs-deleter_{n}", self._deletes.run)
        beat = partial(self._heartbeat.run, self._heartbeat_every, self._closed, self._fail)
        self._spawn("s3drain-sqs-heartbeat", beat)

    def receive(self, timeout: float | None = None) -> list[Received]:
        """The next batch (one ReceiveMessage's worth), or [] after `timeout` seconds. Raises
        the error that stopped the receivers (SQS unreachable for good: exit 5)."""
        self._raise_failure()
        try:
            batch = self._ready.get(timeout=timeout)
        except queue.Empty:
            batch = []
        self._raise_failure()
        return batch

    def settled(self, ref: ObjectRef, outcome: Outcome, *, stopping: bool = False) -> None:
        """`stopping`: a message left now (its object cut short by the run's stop) is visible
        again at once, as `release_unfinished` makes the others, not after its timeout."""
        with self._lock:
            back: list[Message] = []
            for message, verdict in self._tracker.settle(ref, outcome):
                if verdict == "leave" and stopping:
                    back.append(message)
                else:
                    self._finish(message, verdict)
            for message_id in self._after_release.settle(ref, outcome):
                self._deletes.put(message_id)
        self._release(back)

    def release_unfinished(self) -> int:
        """Stop receiving, delete what is settled, and make every other held message visible
        again at once, so another watcher takes it now rather than after its timeout."""
        self._stopping.set()
        with self._room:
            self._room.notify_all()  # a resting receiver ends now
        self._deletes.join()  # settled messages are deleted, not released
        return self._release_held()

    def close(self, timeout: float = 25.0) -> None:
        """`release_unfinished`, then wait up to `timeout` seconds for the receivers' last long
        polls (what they bring is released too) and stop the threads."""
        self.release_unfinished()
        deadline = self._clock() + timeout
        for thread in self._threads:
            if thread.name.startswith("s3drain-receiver"):
                thread.join(max(0.0, deadline - self._clock()))
        # A receive that answered just before the stop may have been admitted just after the
        # release above: held, and never to be settled now. Handed back too.
        self._release_held()
        self._deletes.join()
        self._closed.set()
        for thread in self._threads:
            if not thread.name.startswith("s3drain-receiver"):
                thread.join(max(0.0, deadline - self._clock()))

    def counters(self) -> InboxCounters:
        with self._lock:
            oldest = self._tracker.oldest_sent()
            return InboxCounters(
                **self._counts,
                in_flight=len(self._tracker),
                oldest_age=None if oldest is None else max(0.0, self._wall() - oldest),
            )

    def drained(self) -> bool:
        """Whether two ReceiveMessage calls answered with no message since the latest answer
        that brought some, one of them started after it: SQS itself said the queue had nothing
        visible (a receive that failed says nothing). Two, not one: a server may answer one
        long poll empty while another consumer changes the queue (moto does, under concurrent
        deletes). One started after: a poll already waiting saw those messages go to another."""
        with self._lock:
            return self._proves_drained(self._empty_since)

    def _proves_drained(self, empty: Iterable[int]) -> bool:
        polls = list(empty)
        return len(polls) >= _EMPTY_ANSWERS and any(poll > self._mark for poll in polls)

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    # --- receivers

    def _receive_loop(self) -> None:
        try:
            self._receive_until_stopped()
        except BaseException as exc:  # a bug (or a note callback's): surface it, never die mute
            self._fail(exc)

    def _receive_until_stopped(self) -> None:
        while not self._stopping.is_set():
            with self._room:
                while len(self._tracker) >= self._settings.max_in_flight:
                    if self._stopping.is_set():
                        return
                    self._room.wait(0.5)
                self._polls += 1
                poll = self._polls
                self._polling.add(poll)
            try:
                messages = calls.receive(
                    self._client,
                    self._queue_url,
                    wait_seconds=self._settings.wait_seconds,
                    max_messages=self._settings.max_messages,
                    visibility_timeout=self._visibility,
                    retry=self._receive_retry,
                    clock=self._clock,
                )
            except (ClientError, BotoCoreError, S3DrainError) as exc:
                with self._lock:
                    self._polling.discard(poll)
                if self._breaker.tripped is None and calls.transient(exc):
                    continue  # its retries ran out within a blip: poll again
                self._fail(calls.explain(exc, "ReceiveMessage", self._queue_url, self._breaker))
                return
            with self._room:
                self._polling.discard(poll)
                if messages:
                    self._mark = self._polls
                    self._empty_since.clear()
                    self._room.notify_all()  # a resting receiver polls again
                else:
                    self._empty_since.append(poll)
                    self._rest_if_drained()
            if self._stopping.is_set():
                with self._lock:
                    for message in messages:
                        self._after_release.received_again(message)
                self._release(messages)  # arrived after the stop: hand them straight back
                return
            batch = [r for r in map(self._admit, messages) if r is not None]
            if batch:
                self._ready.put(batch)

    def _rest_if_drained(self) -> None:
        """--once, after an empty answer (with the lock held): rest while nothing is held and
        the answers in hand with the polls still out can prove the queue drained without this
        receiver, until the stop, an answer with messages, or `_rest` seconds."""
        if not self._rest or len(self._tracker):
            return
        if not self._proves_drained([*self._empty_since, *self._polling]):
            return
        mark = self._mark
        self._room.wait_for(lambda: self._stopping.is_set() or self._mark != mark, self._rest)

    def _admit(self, message: Message) -> Received | None:
        parsed = parse_message(message.body)
        with self._lock:
            self._after_release.taken_again(message.message_id)
            self._counts["received"] += 1
            admission = self._admitter.admit(message.message_id, parsed)
            for name, count in admission.counts.items():
                self._counts[name] += count
            for kind, detail in admission.notes:
                self._note(kind, message.message_id, detail)
            if admission.kind == "bad":
                return None
            visible_until = message.received_at + self._visibility
            admitted = self._tracker.add(message, admission.to_drain, visible_until)
            if admission.kind == "test":
                if not admitted.again:
                    self._finish(message, "delete")
                return None
            if admitted.again:
                return None
            if admitted.verdict is not None:
                self._finish(message, admitted.verdict)
        return Received(message, admission.events, admitted.todo)

    # --- finishing a message (called with the lock held)

    def _finish(self, message: Message, verdict: Verdict) -> None:
        if verdict == "delete":
            self._deletes.put(message.message_id)
            return
        self._tracker.forget(message.message_id)
        self._counts["left"] += 1
        self._note("left", message.message_id, "an object it names failed: it comes back later")
        self._room.notify_all()

    # --- deleting settled messages: events/message_deletes.py

    # --- the heartbeat (events/heartbeat.py)

    def extend_due(self) -> None:
        """One beat, at once: the heartbeat thread's work, for tests."""
        self._heartbeat.beat()

    def _lost(self, failure: calls.EntryFailure) -> None:
        self._counts["visibility_lost"] += 1
        self._note(
            "visibility-lost", failure.message.message_id, f"{failure.code}: {failure.detail}"
        )

    # --- helpers

    def _release_held(self) -> int:
        with self._lock:
            held = self._tracker.unfinished()
            for message in held:
                self._after_release.remember(message, self._tracker.pending(message.message_id))
        return self._release(held)

    def _release(self, messages: list[Message]) -> int:
        if not messages:
            return 0
        # Forgotten before the release is sent: a receiver's poll may take a message again the
        # moment it is visible, before the release has even answered. That receive is a new
        # hold, admitted as such (and released at the close); forgotten after it, it was lost
        # with the old one and stayed invisible for a whole visibility timeout.
        with self._lock:
            for message in messages:
                self._tracker.forget(message.message_id)
            self._room.notify_all()
        try:
            result = calls.change_visibility(
                self._client, self._queue_url, messages, 0, self._settle_retry
            )
        except (ClientError, BotoCoreError, S3DrainError):
            return 0  # they come back after their visibility timeout instead
        with self._lock:
            # A receive still polling at the stop may take one back, to hand it back again:
            # one message, counted once.
            ids = {m.message_id for m in result.done} - self._released_ids
            self._released_ids |= ids
            self._counts["released"] += len(ids)
        return len(result.done)

    def _note(self, kind: NoteKind, message_id: str, detail: str) -> None:
        if self._on_note is not None:
            self._on_note(Note(kind, message_id, detail))

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = error
        self._stopping.set()
        self._ready.put([])  # wake a loop waiting in receive()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
