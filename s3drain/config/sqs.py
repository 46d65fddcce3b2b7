"""How to reach SQS: the settings `events setup` and the watcher share.

Credentials, region and profile are the S3 connection's (`config/s3.py`): one identity drains
the bucket and consumes its queue. Only the endpoint differs, because a private S3 (MinIO) has
no SQS beside it while moto and LocalStack serve every service on one URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from s3drain.config.s3 import S3Settings
from s3drain.config.sources import Sources, float_in, int_in, optional

# Says "botocore's own endpoint for the region" where an S3 endpoint is set for another server.
AWS_DEFAULT = "aws"
# Names that set the S3 endpoint and no other service's: an SQS endpoint never follows them.
_S3_ONLY_ENDPOINT_NAMES = ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@dataclass(frozen=True)
class SqsSettings:
    endpoint_url: str | None = None  # None: botocore's endpoint for the region
    queue_url: str | None = None  # the watcher's queue; `events setup` names its own
    wait_seconds: int = 20  # long poll: SQS's maximum, the fewest empty receives
    max_messages: int = 10  # SQS's maximum per ReceiveMessage
    receivers: int = 2  # threads long-polling, so a slow batch never stalls the next
    visibility_timeout: int = 60  # asked for on every receive, then extended by the heartbeat
    max_in_flight: int = 100  # messages held before the receivers pause


def load_sqs_settings(sources: Sources, s3: S3Settings) -> SqsSettings:
    return SqsSettings(
        endpoint_url=sqs_endpoint(sources, s3),
        queue_url=optional(sources, "queue_url", _queue_url, None),
        wait_seconds=optional(sources, "sqs_wait_seconds", int_in(1, 20, "wait seconds"), 20),
        receivers=optional(sources, "sqs_receivers", int_in(1, 32, "receivers"), 2),
        visibility_timeout=int(
            optional(sources, "sqs_visibility_timeout", float_in(10, 43200), 60.0)
        ),
    )


def sqs_endpoint(sources: Sources, s3: S3Settings) -> str | None:
    """`--sqs-endpoint-url` (or S3DRAIN_SQS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS) if set; `aws`
    there means botocore's default. Otherwise the S3 endpoint when it was given for every
    service (`--endpoint-url`, AWS_ENDPOINT_URL: moto, LocalStack), not when it was given for
    S3 alone (S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3: MinIO has no SQS)."""
    explicit = sources.get("sqs_endpoint_url")
    if explicit is not None:
        text = str(explicit.raw).strip()
        if text.lower() == AWS_DEFAULT:
            return None
        return optional(sources, "sqs_endpoint_url", _endpoint, None)
    given = sources.get("endpoint_url")
    if given is None or given.origin.split(" ", 1)[0] in _S3_ONLY_ENDPOINT_NAMES:
        return None
    return s3.endpoint_url


def _endpoint(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise ValueError(
            f"{text!r} is not a URL (for example http://127.0.0.1:4566), nor {AWS_DEFAULT!r}"
        )
    return text.rstrip("/")


def _queue_url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise ValueError(
            f"{text!r} is not a queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME; "
            "`s3drain events setup` prints it)"
        )
    return text
