"""`s3drain events setup`'s settings: one frozen `SetupSettings`, validated once."""

from __future__ import annotations

import re
from dataclasses import dataclass

from s3drain.config.s3 import S3Settings, load_s3_settings
from s3drain.config.sources import Sources, boolean, bucket_name, int_in, optional, required
from s3drain.config.sqs import SqsSettings, load_sqs_settings
from s3drain.events.setup_plan import MAX_QUEUE_NAME, default_queue_name

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,76}$")  # 80 with room for "-dlq"
_ACCOUNT = re.compile(r"^\d{12}$")


@dataclass(frozen=True)
class SetupSettings:
    s3: S3Settings
    sqs: SqsSettings
    bucket: str
    prefix: str
    queue_name: str
    dlq_name: str
    max_receive_count: int = 5  # receives before a message moves to the dead-letter queue
    bucket_account: str | None = None  # None: the queue's own account
    dry_run: bool = False
    json_summary: bool = False


def load_setup_settings(sources: Sources) -> SetupSettings:
    bucket = bucket_name(required(sources, "bucket", "bucket"))
    prefix_value = sources.get("prefix")
    prefix = "" if prefix_value is None else str(prefix_value.raw)
    queue_name = optional(sources, "queue_name", _queue_name, default_queue_name(bucket, prefix))
    s3 = load_s3_settings(sources, workers=1)
    return SetupSettings(
        s3=s3,
        sqs=load_sqs_settings(sources, s3),
        bucket=bucket,
        prefix=prefix,
        queue_name=queue_name,
        dlq_name=f"{queue_name}-dlq",
        max_receive_count=optional(
            sources, "max_receive_count", int_in(1, 1000, "max receive count"), 5
        ),
        bucket_account=optional(sources, "bucket_account", _account, None),
        dry_run=optional(sources, "dry_run", boolean, False),
        json_summary=bool(sources.flags.get("json_summary")),
    )


def _queue_name(text: str) -> str:
    if not _QUEUE_NAME.match(text):
        raise ValueError(
            f"{text!r} is not a queue name: 1 to {MAX_QUEUE_NAME - 4} letters, digits, '-' "
            "or '_' (the dead-letter queue adds '-dlq')"
        )
    return text


def _account(text: str) -> str:
    if not _ACCOUNT.match(text):
        raise ValueError(f"{text!r} is not a 12-digit AWS account ID")
    return text
