"""Helpers for the event tests: queues on a real server, an inbox wired to it, waiting."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from s3drain.config.s3 import S3Settings
from s3drain.config.sqs import SqsSettings
from s3drain.events.client import make_sqs_client
from s3drain.events.inbox import Inbox
from s3drain.events.report import Note, Received
from s3drain.s3.breaker import Breaker
from s3drain.s3.retry import RetryPolicy
from tests.support.server import service_client

REGION = "us-east-1"
# The keys that break hand-written consumers: a space, +, %, %2B, unicode, URL-special characters.
TRICKY_KEYS = [
    "in/plain.csv",
    "in/a b.csv",
    "in/a+b.csv",
    "in/100% done.csv",
    "in/%2B literally.csv",
    "in/ünïcödé 日本 🙂.csv",
    "in/deep/er/x=1&y=2;@:$,.csv",
]


def s3_settings(url: str) -> S3Settings:
    return S3Settings(
        endpoint_url=url,
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        max_attempts=4,
        connect_timeout=2.0,
        read_timeout=10.0,
    )


def make_queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    """(url, arn) of a new queue."""
    url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def depth(sqs: Any, queue_url: str) -> int:
    """Messages in the queue, visible or not."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(found.get(name, 0)) for name in names)


def peek(sqs: Any, queue_url: str, wait: int = 0) -> list[dict[str, Any]]:
    """What another consumer would receive now (made visible again at once)."""
    answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait)
    messages: list[dict[str, Any]] = answer.get("Messages", [])
    for message in messages:
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return messages


def s3_event_body(key_encoded: str, bucket: str = "lake", etag: str = "e1", seq: str = "01") -> str:
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-11-23T19:09:09.123Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": key_encoded, "size": 1, "eTag": etag, "sequencer": seq},
        },
    }
    return json.dumps({"Records": [record]})


class Notes:
    def __init__(self) -> None:
        self.items: list[Note] = []

    def __call__(self, note: Note) -> None:
        self.items.append(note)

    def kinds(self) -> list[str]:
        return [n.kind for n in self.items]


@contextmanager
def running_inbox(
    url: str,
    queue_url: str,
    *,
    bucket: str = "lake",
    prefix: str = "",
    breaker_window: float = 10.0,
    sqs_url: str | None = None,
    notes: Notes | None = None,
    heartbeat_every: float | None = None,
    retry: RetryPolicy | None = None,
    client_hook: Callable[[Any], None] | None = None,
    rest_when_drained: float = 0.0,
    **settings: Any,
) -> Iterator[Inbox]:
    """An inbox on `queue_url` with short polls (1 s), started, and closed afterwards."""
    values: dict[str, Any] = {"wait_seconds": 1, "visibility_timeout": 30, "receivers": 2}
    values |= settings
    sqs_settings = SqsSettings(endpoint_url=sqs_url or url, queue_url=queue_url, **values)
    client = make_sqs_client(s3_settings(url), sqs_settings)
    if client_hook is not None:
        client_hook(client)
    breaker = Breaker(breaker_window)
    inbox = Inbox(
        client,
        sqs_settings,
        bucket=bucket,
        prefix=prefix,
        retry=retry or RetryPolicy(max_attempts=4, base_seconds=0.05, cap_seconds=0.5),
        breaker=breaker,
        on_note=notes,
        heartbeat_every=heartbeat_every,
        rest_when_drained=rest_when_drained,
    )
    inbox.start()
    try:
        yield inbox
    finally:
        inbox.close(timeout=5)
        client.close()


def collect(inbox: Inbox, todo: int, timeout: float = 15.0) -> list[Received]:
    """Received batches until `todo` objects are to be drained (or the time is up)."""
    found: list[Received] = []
    deadline = time.monotonic() + timeout
    while sum(len(r.todo) for r in found) < todo and time.monotonic() < deadline:
        for batch_item in inbox.receive(timeout=0.5):
            found.append(batch_item)
    return found


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def sqs_client(url: str) -> Any:
    return service_client("sqs", url)


class _Status:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


def deny(client: Any, service: str, operation: str, code: str = "AccessDenied") -> None:
    """Make `client` answer `operation` with a 403 `code`, as AWS does where a permission is
    missing: the request never leaves (botocore's before-call may answer it)."""

    def refuse(**_: Any) -> tuple[_Status, dict[str, Any]]:
        return _Status(403), {
            "Error": {"Code": code, "Message": f"not authorized to perform {operation}"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    client.meta.events.register(f"before-call.{service}.{operation}", refuse)
