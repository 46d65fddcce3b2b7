"""What `s3drain events setup` wants the queue, its policy and the bucket's notification
configuration to be, merged with what is there: pure functions over plain JSON.

Merging is the point. A bucket has one notification configuration for all its consumers
(other queues, topics, Lambda functions, the EventBridge switch) and a queue has one access
policy: replacing either would silently cut someone else off. s3drain changes only its own
entry (found by its Id or Sid), and leaves an equivalent entry made by hand alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

MAX_QUEUE_NAME = 80  # SQS's limit
CREATED_EVENTS = "s3:ObjectCreated:*"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's maximum: a dead letter waits for a human
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]+")
# Characters S3 takes as they are in a notification filter value; anything else is entered
# URL-encoded, a space as '+' (S3 User Guide, "Configuring event notifications using object
# key name filtering"). moto matches filters against the raw key, LocalStack against its
# path-encoded key: a prefix with other characters may match differently there.
_FILTER_SAFE = "/!-_.*'()"


@dataclass(frozen=True)
class Arn:
    partition: str
    region: str
    account: str
    name: str

    @classmethod
    def parse(cls, arn: str) -> Arn:
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn":
            raise ValueError(f"{arn!r} is not an ARN")
        return cls(parts[1], parts[3], parts[4], parts[5])

    def sibling(self, name: str) -> str:
        """The ARN of another queue in the same account and region."""
        return f"arn:{self.partition}:sqs:{self.region}:{self.account}:{name}"


def default_queue_name(bucket: str, prefix: str) -> str:
    """`s3drain-<bucket>[-<prefix>]`, cut to fit SQS's 80 characters with room for `-dlq`; a
    cut name ends with a hash of the whole, so two long prefixes never share a queue."""
    base = "-".join(
        part for part in ("s3drain", bucket, _NOT_IN_NAME.sub("-", prefix).strip("-_")) if part
    )
    base = _NOT_IN_NAME.sub("-", base)
    limit = MAX_QUEUE_NAME - len("-dlq")
    if len(base) <= limit:
        return base
    digest = hashlib.sha256(f"{bucket}\0{prefix}".encode()).hexdigest()[:10]
    return f"{base[: limit - 11]}-{digest}"


def filter_value(prefix: str) -> str:
    return quote_plus(prefix, safe=_FILTER_SAFE)


def configuration_id(queue_name: str) -> str:
    """The Id of our entry in the bucket's notification configuration: how setup finds it
    again among everyone else's."""
    return queue_name if queue_name.startswith("s3drain-") else f"s3drain-{queue_name}"


def statement_id(bucket: str) -> str:
    return f"s3drain-s3-sends-from-{_NOT_IN_NAME.sub('-', bucket)}"


def send_statement(queue_arn: str, bucket: str, source_account: str | None) -> dict[str, Any]:
    """S3 may send to the queue, from this bucket only: SourceArn names the bucket, and
    SourceAccount its owner, because a bucket name can be deleted and taken by another
    account while an ARN without an account would still match it."""
    partition = Arn.parse(queue_arn).partition
    condition: dict[str, Any] = {"ArnLike": {"aws:SourceArn": f"arn:{partition}:s3:::{bucket}"}}
    if source_account:
        condition["StringEquals"] = {"aws:SourceAccount": source_account}
    return {
        "Sid": statement_id(bucket),
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": condition,
    }


def merged_policy(existing: str | None, statement: dict[str, Any]) -> dict[str, Any]:
    """The queue's policy with our statement in it (replacing ours by Sid), every other
    statement kept as it was."""
    policy: dict[str, Any] = json.loads(existing) if existing else {}
    if not isinstance(policy, dict):
        policy = {}
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = [s for s in statements if not (isinstance(s, dict) and s.get("Sid") == statement["Sid"])]
    return {"Version": "2012-10-17", **policy, "Statement": [*kept, statement]}


def queue_attributes(
    *, visibility_timeout: int, dlq_arn: str, max_receive_count: int, policy: dict[str, Any]
) -> dict[str, str]:
    return {
        "VisibilityTimeout": str(visibility_timeout),
        "ReceiveMessageWaitTimeSeconds": "20",
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
        ),
        "Policy": json.dumps(policy),
    }


def dlq_attributes() -> dict[str, str]:
    return {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}


def changed_attributes(wanted: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """The wanted attributes whose value differs from the queue's (JSON ones compared as
    JSON, maxReceiveCount as a number: servers return it as a string or an int)."""
    return {
        name: value
        for name, value in wanted.items()
        if _normal(name, value) != _normal(name, current.get(name))
    }


def _normal(name: str, value: str | None) -> object:
    if value is None:
        return None
    if name in ("Policy", "RedrivePolicy"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if name == "RedrivePolicy" and isinstance(parsed, dict):
            parsed["maxReceiveCount"] = int(parsed.get("maxReceiveCount", 0))
        return parsed
    return value


def queue_configuration(config_id: str, queue_arn: str, prefix: str) -> dict[str, Any]:
    config: dict[str, Any] = {"Id": config_id, "QueueArn": queue_arn, "Events": [CREATED_EVENTS]}
    if prefix:
        rule = {"Name": "prefix", "Value": filter_value(prefix)}
        config["Filter"] = {"Key": {"FilterRules": [rule]}}
    return config


def merged_notification(
    existing: dict[str, Any], ours: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """(the bucket's whole notification configuration with ours in it, what changed:
    "added", "updated" or "unchanged"). Topics, Lambda functions, other queues and the
    EventBridge switch are kept exactly."""
    merged = {k: v for k, v in existing.items() if k != "ResponseMetadata"}
    queues = [dict(q) for q in merged.get("QueueConfigurations", [])]
    for index, current in enumerate(queues):
        if current.get("Id") == ours["Id"]:
            if _same_delivery(current, ours):
                return merged, "unchanged"
            queues[index] = ours
            return {**merged, "QueueConfigurations": queues}, "updated"
    if any(_same_delivery(current, ours) for current in queues):
        return merged, "unchanged"  # made by hand, to the same effect
    return {**merged, "QueueConfigurations": [*queues, ours]}, "added"


def _same_delivery(current: dict[str, Any], ours: dict[str, Any]) -> bool:
    return (
        current.get("QueueArn") == ours["QueueArn"]
        and CREATED_EVENTS in current.get("Events", [])
        and _rules(current) == _rules(ours)
    )


def _rules(config: dict[str, Any]) -> set[tuple[str, str]]:
    rules = config.get("Filter", {}).get("Key", {}).get("FilterRules", [])
    return {(str(r.get("Name", "")).lower(), str(r.get("Value", ""))) for r in rules}
