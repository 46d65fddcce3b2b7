"""`s3drain events setup`: the dead-letter queue, the queue (its redrive policy, and the access
policy that lets S3 send from this bucket), and the bucket's notification configuration for
`s3:ObjectCreated:*` under the prefix. Idempotent: run twice, the second run changes nothing.

Every step reads first and writes only what differs (`setup_plan.py` merges). A dry run reads
the same and writes nothing; its plan is the JSON the real run would apply. A step S3 or SQS
refuses is one line naming the permission it needs (exit 6); the steps before it stay done,
and running setup again once the permission is granted finishes the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from s3drain.errors import (
    AbortError,
    AccessDeniedError,
    ConfigError,
    S3DrainError,
    describe,
    error_code,
    http_status,
)
from s3drain.events import setup_plan as plan
from s3drain.events.client import SQSClient
from s3drain.events.settings import SetupSettings
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy

T = TypeVar("T")

PERMISSIONS = {
    "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
    "PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    "GetQueueUrl": "sqs:GetQueueUrl",
    "CreateQueue": "sqs:CreateQueue",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "SetQueueAttributes": "sqs:SetQueueAttributes",
}
_NO_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_PLACEHOLDER_ACCOUNT = "<account>"


@dataclass(frozen=True)
class Step:
    what: str  # "dead-letter queue", "queue", "bucket notification"
    action: str  # "created", "updated", "unchanged" (or "would create", ... in a dry run)
    detail: str
    apply: dict[str, Any] | None  # the JSON written (or that would be), None when unchanged


@dataclass(frozen=True)
class SetupResult:
    queue_url: str | None  # None only in a dry run that would create the queue
    queue_arn: str
    dlq_url: str | None
    dlq_arn: str
    steps: tuple[Step, ...] = field(default=())


def run_setup(
    settings: SetupSettings, sqs: SQSClient, s3: S3Client, retry: RetryPolicy
) -> SetupResult:
    setup = _Setup(settings, sqs, s3, retry)
    return setup.run()


class _Setup:
    def __init__(
        self, settings: SetupSettings, sqs: SQSClient, s3: S3Client, retry: RetryPolicy
    ) -> None:
        self.settings = settings
        self.sqs = sqs
        self.s3 = s3
        self.retry = retry
        self.done: list[str] = []
        self.steps: list[Step] = []

    def run(self) -> SetupResult:
        s = self.settings
        # First, because it proves the bucket exists and is ours before anything is created.
        existing = self._call(
            "GetBucketNotificationConfiguration",
            lambda: self.s3.get_bucket_notification_configuration(Bucket=s.bucket),
        )
        dlq_url, dlq_arn = self._dead_letter_queue()
        queue_url, queue_arn = self._queue(dlq_arn)
        self._notification(dict(existing), queue_arn)
        return SetupResult(queue_url, queue_arn, dlq_url, dlq_arn, tuple(self.steps))

    # --- the steps

    def _dead_letter_queue(self) -> tuple[str | None, str]:
        name = self.settings.dlq_name
        url = self._queue_url(name)
        wanted = plan.dlq_attributes()
        if url is None:
            if self.settings.dry_run:
                arn = f"arn:aws:sqs:{self.settings.s3.region or '<region>'}:"
                arn += f"{self.settings.bucket_account or _PLACEHOLDER_ACCOUNT}:{name}"
                self._step("dead-letter queue", "would create", name, wanted)
                return None, arn
            url = self._create(name, wanted)
            self._step("dead-letter queue", "created", name, wanted)
        else:
            current = self._attributes(url)
            changes = plan.changed_attributes(wanted, current)
            self._update("dead-letter queue", name, url, changes)
        return url, self._arn(url, fallback=None)

    def _queue(self, dlq_arn: str) -> tuple[str | None, str]:
        s = self.settings
        url = self._queue_url(s.queue_name)
        current = {} if url is None else self._attributes(url)
        arn = current.get("QueueArn") or plan.Arn.parse(dlq_arn).sibling(s.queue_name)
        account = s.bucket_account or plan.Arn.parse(arn).account
        statement = plan.send_statement(arn, s.bucket, account)
        wanted = plan.queue_attributes(
            visibility_timeout=s.sqs.visibility_timeout,
            dlq_arn=dlq_arn,
            max_receive_count=s.max_receive_count,
            policy=plan.merged_policy(current.get("Policy"), statement),
        )
        if url is None:
            if s.dry_run:
                self._step("queue", "would create", s.queue_name, wanted)
                return None, arn
            url = self._create(s.queue_name, wanted)
            self._step("queue", "created", s.queue_name, wanted)
            return url, self._arn(url, fallback=arn)
        self._update("queue", s.queue_name, url, plan.changed_attributes(wanted, current))
        return url, arn

    def _notification(self, existing: dict[str, Any], queue_arn: str) -> None:
        s = self.settings
        ours = plan.queue_configuration(plan.configuration_id(s.queue_name), queue_arn, s.prefix)
        merged, change = plan.merged_notification(existing, ours)
        kinds = ("QueueConfigurations", "TopicConfigurations", "LambdaFunctionConfigurations")
        kept = sum(len(merged.get(k, [])) for k in kinds) - 1  # ours is among them
        where = f"s3://{s.bucket}/{s.prefix}"
        detail = f"{plan.CREATED_EVENTS} under {where} -> {s.queue_name} ({kept} others kept)"
        if change == "unchanged":
            self._step("bucket notification", "unchanged", detail, None)
            return
        if s.dry_run:
            self._step("bucket notification", f"would be {change}", detail, merged)
            return
        self._call(
            "PutBucketNotificationConfiguration",
            lambda: self.s3.put_bucket_notification_configuration(
                Bucket=s.bucket,
                NotificationConfiguration=merged,  # type: ignore[arg-type]
            ),
        )
        self._step("bucket notification", change, detail, merged)

    # --- SQS helpers

    def _queue_url(self, name: str) -> str | None:
        try:
            answer = self._call("GetQueueUrl", lambda: self.sqs.get_queue_url(QueueName=name))
        except _Missing:
            return None
        return answer["QueueUrl"]

    def _attributes(self, url: str) -> dict[str, str]:
        answer = self._call(
            "GetQueueAttributes",
            lambda: self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]),
        )
        return {str(name): value for name, value in answer.get("Attributes", {}).items()}

    def _arn(self, url: str, fallback: str | None) -> str:
        answer = self._call(
            "GetQueueAttributes",
            lambda: self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]),
        )
        arn = answer.get("Attributes", {}).get("QueueArn") or fallback
        if arn is None:
            raise AbortError(f"SQS did not say the ARN of queue {url}")
        return arn

    def _create(self, name: str, attributes: dict[str, str]) -> str:
        answer = self._call(
            "CreateQueue",
            lambda: self.sqs.create_queue(QueueName=name, Attributes=attributes),  # type: ignore[arg-type]
        )
        return answer["QueueUrl"]

    def _update(self, what: str, name: str, url: str, changes: dict[str, str]) -> None:
        if not changes:
            self._step(what, "unchanged", name, None)
        elif self.settings.dry_run:
            self._step(what, "would update", f"{name}: {', '.join(sorted(changes))}", changes)
        else:
            self._call(
                "SetQueueAttributes",
                lambda: self.sqs.set_queue_attributes(QueueUrl=url, Attributes=changes),  # type: ignore[arg-type]
            )
            self._step(what, "updated", f"{name}: {', '.join(sorted(changes))}", changes)

    def _step(self, what: str, action: str, detail: str, apply: dict[str, Any] | None) -> None:
        self.steps.append(Step(what, action, detail, apply))
        if action in ("created", "updated", "added"):
            self.done.append(f"{what} {action}")

    # --- one call, its retries, and its failure as one line

    def _call(self, operation: str, step: Callable[[], T]) -> T:
        try:
            return self.retry.run(operation, step)
        except (ClientError, BotoCoreError) as exc:
            if operation == "GetQueueUrl" and error_code(exc) in _NO_QUEUE:
                raise _Missing from None
            raise self._explain(exc, operation) from None

    def _explain(self, exc: BaseException, operation: str) -> S3DrainError:
        s = self.settings
        code = error_code(exc) or ""
        before = f" (done before it: {', '.join(self.done)})" if self.done else ""
        target = f"bucket {s.bucket!r}" if "Bucket" in operation else "the queues"
        if "AccessDenied" in code:
            return AccessDeniedError(
                f"{operation} on {target} was refused ({code}): the credentials need "
                f"{PERMISSIONS[operation]}{before}",
                hint="grant it and run `s3drain events setup` again: done steps stay done",
            )
        if code == "NoSuchBucket" or (http_status(exc) == 404 and "Bucket" in operation):
            return ConfigError(f"bucket {s.bucket!r} does not exist: check --bucket")
        if code == "InvalidArgument" and operation == "PutBucketNotificationConfiguration":
            return ConfigError(
                f"S3 refused the notification configuration of bucket {s.bucket!r} "
                f"({describe(exc)}){before}",
                hint="'overlap': another entry already sends s3:ObjectCreated under an "
                "overlapping prefix (narrow it, or fan out through SNS); 'Unable to validate': "
                "S3 may not send to the queue (for a bucket of another account pass "
                "--bucket-account)",
            )
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ConfigError(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or pass --profile"
            )
        if isinstance(exc, EndpointConnectionError):
            return ConfigError(f"cannot reach {'S3' if 'Bucket' in operation else 'SQS'}: {exc}")
        if http_status(exc) == 403:
            return ConfigError(f"{operation} was refused: {describe(exc)} (check the credentials)")
        return AbortError(f"{operation} failed: {describe(exc)}{before}")


class _Missing(Exception):
    """GetQueueUrl: no such queue yet."""
