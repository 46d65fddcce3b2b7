"""events/setup_plan.py (pure merges and names) and config/sqs.py (where SQS is)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3drain.config.s3 import load_s3_settings
from s3drain.config.sources import Sources
from s3drain.config.sqs import load_sqs_settings
from s3drain.errors import ConfigError
from s3drain.events import setup_plan as plan

QUEUE = "arn:aws:sqs:eu-west-1:111122223333:s3drain-lake"


def test_default_queue_names_fit_and_never_collide() -> None:
    assert plan.default_queue_name("lake", "") == "s3drain-lake"
    assert plan.default_queue_name("lake", "exports/2024/") == "s3drain-lake-exports-2024"
    assert plan.default_queue_name("my.lake", "a b/ü/") == "s3drain-my-lake-a-b"
    long_a = plan.default_queue_name("lake", "x" * 100 + "/a/")
    long_b = plan.default_queue_name("lake", "x" * 100 + "/b/")
    assert len(long_a) <= 76 and len(long_b) <= 76
    assert long_a != long_b


@pytest.mark.parametrize(
    ("prefix", "value"),
    [
        ("exports/2024/", "exports/2024/"),
        ("my data/", "my+data/"),
        ("a+b/", "a%2Bb/"),
        ("ü/", "%C3%BC/"),
        ("x-y_z.(1)*'!/", "x-y_z.(1)*'!/"),
    ],
)
def test_filter_values_are_encoded_as_s3_asks(prefix: str, value: str) -> None:
    assert plan.filter_value(prefix) == value


def test_the_send_statement_names_the_bucket_and_its_account() -> None:
    statement = plan.send_statement(QUEUE, "lake", "111122223333")
    assert statement["Condition"] == {
        "ArnLike": {"aws:SourceArn": "arn:aws:s3:::lake"},
        "StringEquals": {"aws:SourceAccount": "111122223333"},
    }
    china = plan.send_statement("arn:aws-cn:sqs:cn-north-1:1:q", "lake", None)
    assert china["Condition"] == {"ArnLike": {"aws:SourceArn": "arn:aws-cn:s3:::lake"}}


def test_merged_policy_replaces_only_ours() -> None:
    theirs = {"Sid": "theirs", "Effect": "Deny", "Principal": "*", "Action": "*"}
    old_ours = {"Sid": plan.statement_id("lake"), "Effect": "Allow", "Resource": "old"}
    existing = json.dumps({"Version": "2012-10-17", "Id": "p", "Statement": [theirs, old_ours]})
    new = plan.send_statement(QUEUE, "lake", "111122223333")
    merged = plan.merged_policy(existing, new)
    assert merged["Id"] == "p"
    assert merged["Statement"] == [theirs, new]
    # A single statement given as an object, and no policy at all.
    single = plan.merged_policy(json.dumps({"Statement": theirs}), new)
    assert single["Statement"] == [theirs, new]
    assert plan.merged_policy(None, new) == {"Version": "2012-10-17", "Statement": [new]}


def test_changed_attributes_compare_json_as_json() -> None:
    wanted = plan.queue_attributes(
        visibility_timeout=60,
        dlq_arn="arn:aws:sqs:r:1:d",
        max_receive_count=5,
        policy={"Statement": []},
    )
    current = {
        "VisibilityTimeout": "60",
        "ReceiveMessageWaitTimeSeconds": "20",
        "RedrivePolicy": '{"maxReceiveCount":"5","deadLetterTargetArn":"arn:aws:sqs:r:1:d"}',
        "Policy": '{ "Statement" : [] }',
    }
    assert plan.changed_attributes(wanted, current) == {}
    current["VisibilityTimeout"] = "30"
    assert plan.changed_attributes(wanted, current) == {"VisibilityTimeout": "60"}
    assert set(plan.changed_attributes(wanted, {})) == set(wanted)


def ours(prefix: str = "in/") -> dict[str, Any]:
    return plan.queue_configuration("s3drain-lake", QUEUE, prefix)


def test_merged_notification_adds_ours_and_keeps_everything_else() -> None:
    existing: dict[str, Any] = {
        "ResponseMetadata": {"HTTPStatusCode": 200},
        "QueueConfigurations": [{"Id": "other", "QueueArn": "arn:x", "Events": ["e"]}],
        "TopicConfigurations": [{"Id": "t", "TopicArn": "arn:t", "Events": ["e"]}],
        "LambdaFunctionConfigurations": [{"Id": "l", "LambdaFunctionArn": "arn:l", "Events": []}],
        "EventBridgeConfiguration": {},
    }
    merged, change = plan.merged_notification(existing, ours())
    assert change == "added"
    assert "ResponseMetadata" not in merged
    assert merged["QueueConfigurations"] == [existing["QueueConfigurations"][0], ours()]
    for kept in ("TopicConfigurations", "LambdaFunctionConfigurations", "EventBridgeConfiguration"):
        assert merged[kept] == existing[kept]


def test_merged_notification_updates_ours_by_id() -> None:
    merged, change = plan.merged_notification({"QueueConfigurations": [ours("old/")]}, ours())
    assert change == "updated"
    assert merged["QueueConfigurations"] == [ours()]


def test_merged_notification_leaves_an_equivalent_entry_alone() -> None:
    by_hand = {
        "Id": "made-by-hand",
        "QueueArn": QUEUE,
        "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "Prefix", "Value": "in/"}]}},
    }
    merged, change = plan.merged_notification({"QueueConfigurations": [by_hand]}, ours())
    assert change == "unchanged"
    assert merged["QueueConfigurations"] == [by_hand]


def test_the_whole_bucket_has_no_filter() -> None:
    assert "Filter" not in ours("")


def test_arn_parse() -> None:
    arn = plan.Arn.parse(QUEUE)
    assert (arn.partition, arn.region, arn.account, arn.name) == (
        "aws",
        "eu-west-1",
        "111122223333",
        "s3drain-lake",
    )
    assert arn.sibling("dlq") == "arn:aws:sqs:eu-west-1:111122223333:dlq"
    with pytest.raises(ValueError, match="not an ARN"):
        plan.Arn.parse("nope")


# --- config/sqs.py


def sqs_settings(flags: dict[str, Any], environ: dict[str, str]) -> Any:
    sources = Sources(flags, environ, None)
    return load_sqs_settings(sources, load_s3_settings(sources, workers=1))


@pytest.mark.parametrize(
    ("flags", "environ", "endpoint"),
    [
        ({}, {}, None),
        ({"endpoint_url": "http://127.0.0.1:4566"}, {}, "http://127.0.0.1:4566"),
        ({}, {"AWS_ENDPOINT_URL": "http://ls:4566"}, "http://ls:4566"),
        ({}, {"S3_ENDPOINT_URL": "http://minio:9000"}, None),
        ({}, {"AWS_ENDPOINT_URL_S3": "http://minio:9000"}, None),
        ({}, {"AWS_ENDPOINT_URL_SQS": "http://sqs:9324/"}, "http://sqs:9324"),
        (
            {"endpoint_url": "http://moto:5000", "sqs_endpoint_url": "http://sqs:9324"},
            {},
            "http://sqs:9324",
        ),
        ({"endpoint_url": "http://moto:5000", "sqs_endpoint_url": "aws"}, {}, None),
        ({}, {"S3DRAIN_SQS_ENDPOINT_URL": "AWS", "AWS_ENDPOINT_URL": "http://ls:4566"}, None),
    ],
)
def test_where_sqs_is(flags: dict[str, Any], environ: dict[str, str], endpoint: str | None) -> None:
    assert sqs_settings(flags, environ).endpoint_url == endpoint


def test_queue_url_and_tuning_come_from_the_environment() -> None:
    settings = sqs_settings(
        {},
        {
            "S3DRAIN_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q",
            "S3DRAIN_SQS_RECEIVERS": "4",
            "S3DRAIN_SQS_WAIT_SECONDS": "5",
            "S3DRAIN_SQS_VISIBILITY_TIMEOUT": "120",
        },
    )
    assert settings.queue_url == "https://sqs.eu-west-1.amazonaws.com/1/q"
    assert (settings.receivers, settings.wait_seconds, settings.visibility_timeout) == (4, 5, 120)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("S3DRAIN_QUEUE_URL", "my-queue", "not a queue URL"),
        ("S3DRAIN_SQS_WAIT_SECONDS", "21", "out of range"),
        ("S3DRAIN_SQS_RECEIVERS", "0", "out of range"),
        ("S3DRAIN_SQS_VISIBILITY_TIMEOUT", "5", "out of range"),
        ("S3DRAIN_SQS_ENDPOINT_URL", "sqs:9324", "not a URL"),
    ],
)
def test_bad_sqs_settings_say_so(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        sqs_settings({}, {name: value})
