"""The heartbeat: every held message whose visibility ends within half a timeout is made
invisible for another whole one, so no other watcher takes a message whose objects are still
in flight here (a large download can outlast any timeout). A beat that finds a handle gone
stale (the timeout ran out and someone else holds the message now) stops beating for it; the
message is still deleted once its objects are settled."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import S3DrainError
from s3drain.events import calls
from s3drain.events.client import SQSClient
from s3drain.events.tracker import Tracker
from s3drain.s3.retry import RetryPolicy

_NEVER = float("inf")


@dataclass(frozen=True)
class Heartbeat:
    client: SQSClient
    queue_url: str
    visibility: int
    retry: RetryPolicy
    tracker: Tracker
    lock: threading.RLock  # the inbox's: the tracker is read and written under it
    on_lost: Callable[[calls.EntryFailure], None]  # called with the lock held
    clock: Callable[[], float]

    def beat(self) -> None:
        now = self.clock()
        with self.lock:
            due = self.tracker.due(before=now + self.visibility / 2)
        if not due:
            return
        result = calls.change_visibility(
            self.client, self.queue_url, due, self.visibility, self.retry
        )
        with self.lock:
            for message in result.done:
                self.tracker.extended(message.message_id, now + self.visibility)
            for failure in result.failed:
                if self.tracker.leaving(failure.message.message_id):
                    continue  # settled and deleted while this beat was on its way: not lost
                self.tracker.extended(failure.message.message_id, _NEVER)
                self.on_lost(failure)

    def run(
        self, every: float, closed: threading.Event, fail: Callable[[BaseException], None]
    ) -> None:
        """Beat every `every` seconds until `closed`; a bug goes to `fail`."""
        while not closed.wait(every):
            try:
                self.beat()
            except (ClientError, BotoCoreError, S3DrainError):
                continue  # next beat tries again; the breaker watches the endpoint
            except BaseException as exc:
                fail(exc)
                return
