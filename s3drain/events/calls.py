"""The SQS requests the watcher sends, each under the retry policy, and what their answers mean.

Batch calls (DeleteMessageBatch, ChangeMessageVisibilityBatch) answer 200 with a per-entry
`Failed` list: it is read every time. An entry failed with a transient code is sent again; any
other failure is final for that entry. `SenderFault` is not trusted to tell them apart:
LocalStack reports a stale receipt handle with SenderFault false.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from s3drain.errors import (
    AbortError,
    ConfigError,
    S3DrainError,
    TransientError,
    describe,
    error_code,
    http_status,
)
from s3drain.events.client import SQSClient
from s3drain.events.tracker import Message
from s3drain.s3.breaker import Breaker
from s3drain.s3.retry import RetryPolicy, is_retryable

BATCH = 10  # SQS's limit for every batch call
# SQS's own throttling and overload codes (besides the 5xx and Throttling* that
# `s3/retry.is_retryable` already treats as transient).
TRANSIENT_CODES = frozenset(
    {
        "RequestThrottled",
        "AWS.SimpleQueueService.RequestThrottled",
        "ThrottlingException",
        "OverLimit",
        "KmsThrottled",
        "KMS.ThrottlingException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)
_NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def transient(exc: BaseException) -> bool:
    """An error that another try may not meet: worth polling or deleting again."""
    return is_retryable(exc) or error_code(exc) in TRANSIENT_CODES


@dataclass(frozen=True)
class EntryFailure:
    message: Message
    code: str
    detail: str


@dataclass(frozen=True)
class BatchResult:
    done: tuple[Message, ...]
    failed: tuple[EntryFailure, ...]


def _sqs_step(step: Callable[[], Any]) -> Callable[[], Any]:
    """SQS's throttling codes become TransientError, which the retry policy retries."""

    def run() -> Any:
        try:
            return step()
        except ClientError as exc:
            if error_code(exc) in TRANSIENT_CODES and not is_retryable(exc):
                raise TransientError(describe(exc)) from exc
            raise

    return run


def receive(
    client: SQSClient,
    queue_url: str,
    *,
    wait_seconds: int,
    max_messages: int,
    visibility_timeout: int,
    retry: RetryPolicy,
    clock: Callable[[], float] = time.monotonic,
) -> list[Message]:
    answer = retry.run(
        "ReceiveMessage",
        _sqs_step(
            lambda: client.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility_timeout,
                # Both spellings: the newer name for AWS, the older for servers before it.
                MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
                AttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
            )
        ),
    )
    now = clock()
    return [_message(raw, now) for raw in answer.get("Messages", [])]


def _message(raw: Any, now: float) -> Message:
    attributes = raw.get("Attributes") or {}
    sent = attributes.get("SentTimestamp")
    count = attributes.get("ApproximateReceiveCount")
    return Message(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw.get("Body") or "",
        sent_at=int(sent) / 1000 if sent and str(sent).isdigit() else None,
        receive_count=int(count) if count and str(count).isdigit() else 1,
        received_at=now,
    )


def delete(
    client: SQSClient, queue_url: str, messages: Sequence[Message], retry: RetryPolicy
) -> BatchResult:
    def send(entries: list[Any]) -> Any:
        return client.delete_message_batch(QueueUrl=queue_url, Entries=entries)

    return _batched("DeleteMessageBatch", messages, lambda m: {}, send, retry)


def change_visibility(
    client: SQSClient,
    queue_url: str,
    messages: Sequence[Message],
    seconds: int,
    retry: RetryPolicy,
) -> BatchResult:
    def send(entries: list[Any]) -> Any:
        return client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)

    return _batched(
        "ChangeMessageVisibilityBatch",
        messages,
        lambda m: {"VisibilityTimeout": seconds},
        send,
        retry,
    )


def _batched(
    operation: str,
    messages: Sequence[Message],
    extra: Callable[[Message], dict[str, Any]],
    send: Callable[[list[Any]], Any],
    retry: RetryPolicy,
) -> BatchResult:
    done: list[Message] = []
    failed: list[EntryFailure] = []
    for start in range(0, len(messages), BATCH):
        chunk = list(messages[start : start + BATCH])
        for attempt in range(1, retry.max_attempts + 1):
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, **extra(m)}
                for i, m in enumerate(chunk)
            ]
            answer = retry.run(operation, _sqs_step(partial(send, entries)))
            for entry in answer.get("Successful", []):
                done.append(chunk[int(entry["Id"])])
            again: list[Message] = []
            for entry in answer.get("Failed", []):
                message = chunk[int(entry["Id"])]
                code = str(entry.get("Code") or "Error")
                if code in TRANSIENT_CODES and attempt < retry.max_attempts:
                    again.append(message)
                else:
                    failed.append(EntryFailure(message, code, str(entry.get("Message") or "")))
            if not again:
                break
            chunk = again
            retry.pause(min(retry.cap_seconds, retry.base_seconds * 2**attempt))
    return BatchResult(tuple(done), tuple(failed))


def explain(exc: BaseException, operation: str, queue_url: str, breaker: Breaker) -> S3DrainError:
    """An SQS failure that ends the watcher, as one line a user can act on."""
    code = error_code(exc) or ""
    if breaker.tripped is not None:
        return AbortError(sqs_outage(breaker.tripped))
    if code in _NO_QUEUE:
        return ConfigError(
            f"queue {queue_url} does not exist: check --queue-url / S3DRAIN_QUEUE_URL "
            "(`s3drain events setup` creates it and prints its URL)"
        )
    if code in ("AccessDenied", "AccessDeniedException") or http_status(exc) == 403:
        return ConfigError(
            f"SQS denied {operation} on {queue_url} ({code or 'AccessDenied'}): the "
            f"credentials need sqs:{operation.removesuffix('Batch')} on it"
        )
    return AbortError(f"{operation} on {queue_url} failed: {describe(exc)}")


def sqs_outage(tripped: str) -> str:
    """The breaker's message names S3, the service it was written for; this one is SQS's."""
    return tripped.replace("S3 unreachable", "SQS unreachable", 1).replace(
        "objects not yet handled stay in S3", "messages not finished come back to the queue"
    )
