"""Settled messages leave the queue here: one thread gathers the ids the inbox settles into
DeleteMessageBatch calls of up to ten, each message with its newest receipt handle.

A message released at a stop and then finished by the run goes with the handle it was released
with, and quietly: if SQS refuses that delete, another watcher holds the message now, or it
comes back to find its object gone. A held message whose delete fails is counted and noted; it
comes back after its visibility timeout, and the ledger makes the second attempt a no-op.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import S3DrainError, describe, error_code
from s3drain.events import calls
from s3drain.events.client import SQSClient
from s3drain.events.report import NoteKind
from s3drain.events.tracker import AfterRelease, Tracker
from s3drain.s3.breaker import Breaker
from s3drain.s3.retry import RetryPolicy

# DeleteMessageBatch calls in flight at once. More would shorten a burst's tail on SQS (10
# messages a round trip), but moto's SQS loses deletes it answered as done when batches
# overlap (148 of 2,000 in the bench), and the tests and the bench run on moto.
THREADS = 1


@dataclass(frozen=True)
class MessageDeletes:
    client: SQSClient
    queue_url: str
    retry: RetryPolicy
    breaker: Breaker
    # The inbox's, all read and written under `lock`; `room` is notified when a message is
    # no longer held, so a receiver waiting for room polls again.
    tracker: Tracker
    after_release: AfterRelease
    counts: dict[str, int]
    lock: threading.RLock
    room: threading.Condition
    note: Callable[[NoteKind, str, str], None]  # called with the lock held
    fail: Callable[[BaseException], None]  # a bug, or a queue that refuses every delete
    clock: Callable[[], float]
    window: float  # seconds to gather a batch after its first id
    closed: threading.Event  # the thread ends once this is set and nothing waits
    _ids: queue.Queue[str] = field(default_factory=queue.Queue, init=False)

    def put(self, message_id: str) -> None:
        self._ids.put(message_id)

    def join(self) -> None:
        """Until every id put so far has had its delete answered (or failed)."""
        self._ids.join()

    def run(self) -> None:
        while not (self.closed.is_set() and self._ids.empty()):
            try:
                first = self._ids.get(timeout=0.2)
            except queue.Empty:
                continue
            ids = [first]
            deadline = self.clock() + self.window
            while len(ids) < calls.BATCH:
                try:
                    ids.append(self._ids.get(timeout=max(0.0, deadline - self.clock())))
                except queue.Empty:
                    break
            try:
                self.delete(ids)
            except BaseException as exc:  # a bug: surface it, never strand the waiters
                self.fail(exc)
            finally:
                for _ in ids:
                    self._ids.task_done()

    def delete(self, ids: list[str]) -> None:
        with self.lock:
            # The newest receipt handle: the message may have been received again since.
            held = {i: self.tracker.message(i) for i in ids}
            late = {i: m for i in ids if not held[i] and (m := self.after_release.take(i))}
            messages = [m for m in (*held.values(), *late.values()) if m is not None]
        try:
            result = calls.delete(self.client, self.queue_url, messages, self.retry)
        except (ClientError, BotoCoreError, S3DrainError) as exc:
            failures = [
                calls.EntryFailure(m, error_code(exc) or "", describe(exc)) for m in messages
            ]
            result = calls.BatchResult((), tuple(failures))
            if self.breaker.tripped is not None or not calls.transient(exc):
                # Denied, or no queue: every later delete would fail the same way.
                self.fail(calls.explain(exc, "DeleteMessageBatch", self.queue_url, self.breaker))
        with self.lock:
            for message in result.done:
                self.tracker.forget(message.message_id)
                self.counts["deleted"] += 1
            for failure in result.failed:
                if failure.message.message_id in late:
                    continue
                self.tracker.forget(failure.message.message_id)
                self.counts["delete_failed"] += 1
                self.note(
                    "delete-failed", failure.message.message_id, f"{failure.code}: {failure.detail}"
                )
            self.room.notify_all()
