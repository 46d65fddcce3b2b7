"""`s3drain events setup`: what it creates, that it merges rather than replaces, that a second
run changes nothing, that a dry run changes nothing, and that a refused step is one line with
exit 6 - against moto and LocalStack, and through the real command line."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from s3drain.cli import events as cli_events
from s3drain.cli.main import main
from s3drain.config.sources import Sources
from s3drain.errors import AccessDeniedError, ConfigError, ExitCode
from s3drain.events import setup_plan as plan
from s3drain.events.client import make_sqs_client
from s3drain.events.settings import SetupSettings, load_setup_settings
from s3drain.events.setup import SetupResult, run_setup
from s3drain.s3.client import make_client
from s3drain.s3.retry import RetryPolicy
from tests.support.eventkit import deny, make_queue, peek, sqs_client, wait_for
from tests.support.server import s3_client, service_client

WRITES = ("CreateQueue", "SetQueueAttributes", "PutBucketNotificationConfiguration")


def settings_for(url: str, **flags: Any) -> SetupSettings:
    values = {"bucket": "lake", "prefix": "in/", "endpoint_url": url, **flags}
    environ = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return load_setup_settings(Sources(values, environ | {"AWS_REGION": "us-east-1"}, None))


def setup(
    url: str, hooks: Callable[[Any, Any], None] | None = None, **flags: Any
) -> tuple[SetupResult, list[str]]:
    """Run setup in-process; (its result, the write operations it sent)."""
    settings = settings_for(url, **flags)
    s3 = make_client(settings.s3)
    sqs = make_sqs_client(settings.s3, settings.sqs)
    sent: list[str] = []

    def count(event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        if operation in WRITES:
            sent.append(operation)

    s3.meta.events.register("before-call.s3", count)
    sqs.meta.events.register("before-call.sqs", count)
    if hooks is not None:
        hooks(s3, sqs)
    try:
        return run_setup(settings, sqs, s3, RetryPolicy(max_attempts=2, base_seconds=0.01)), sent
    finally:
        s3.close()
        sqs.close()


@pytest.fixture
def lake(events_url: str) -> Any:
    s3 = s3_client(events_url)
    s3.create_bucket(Bucket="lake")
    yield s3
    s3.close()


def attributes(sqs: Any, queue_url: str) -> dict[str, str]:
    found: dict[str, str] = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    return found


def test_setup_makes_everything_and_s3_then_delivers(events_url: str, lake: Any) -> None:
    result, sent = setup(events_url)
    assert [(s.what, s.action) for s in result.steps] == [
        ("dead-letter queue", "created"),
        ("queue", "created"),
        ("bucket notification", "added"),
    ]
    assert sorted(sent) == sorted(
        ["CreateQueue", "CreateQueue", "PutBucketNotificationConfiguration"]
    )
    sqs = sqs_client(events_url)
    assert result.queue_url is not None and result.queue_url.endswith("/s3drain-lake-in")
    queue = attributes(sqs, result.queue_url)
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == result.dlq_arn
    assert int(redrive["maxReceiveCount"]) == 5
    assert queue["ReceiveMessageWaitTimeSeconds"] == "20"
    assert queue["VisibilityTimeout"] == "60"
    [statement] = json.loads(queue["Policy"])["Statement"]
    account = plan.Arn.parse(result.queue_arn).account
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == result.queue_arn
    assert statement["Condition"] == {
        "ArnLike": {"aws:SourceArn": "arn:aws:s3:::lake"},
        "StringEquals": {"aws:SourceAccount": account},
    }
    assert result.dlq_url is not None
    assert attributes(sqs, result.dlq_url)["MessageRetentionPeriod"] == "1209600"
    config = lake.get_bucket_notification_configuration(Bucket="lake")
    [ours] = config["QueueConfigurations"]
    assert ours["QueueArn"] == result.queue_arn
    assert ours["Events"] == ["s3:ObjectCreated:*"]
    [rule] = ours["Filter"]["Key"]["FilterRules"]
    assert (rule["Name"].lower(), rule["Value"]) == ("prefix", "in/")
    # The proof: S3 now sends new objects under the prefix to the queue, and nothing else.
    lake.put_object(Bucket="lake", Key="in/new.csv", Body=b"x")
    lake.put_object(Bucket="lake", Key="out/other.csv", Body=b"x")
    keys: set[str] = set()

    def arrived() -> bool:
        keys.update(
            json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"]
            for m in peek(sqs, result.queue_url or "", 1)
            if "Records" in m["Body"]
        )
        return bool(keys)

    wait_for(arrived, what="the notification")
    assert keys in ({"in/new.csv"}, {"in%2Fnew.csv"})
    sqs.close()


def test_setup_twice_changes_nothing_the_second_time(events_url: str, lake: Any) -> None:
    first, _ = setup(events_url)
    second, sent = setup(events_url)
    assert sent == []
    assert [s.action for s in second.steps] == ["unchanged"] * 3
    assert second.queue_url == first.queue_url
    config = lake.get_bucket_notification_configuration(Bucket="lake")
    assert len(config["QueueConfigurations"]) == 1


def test_dry_run_changes_nothing_and_shows_what_it_would_apply(events_url: str, lake: Any) -> None:
    result, sent = setup(events_url, dry_run="true")
    assert sent == []
    assert [s.action for s in result.steps] == ["would create", "would create", "would be added"]
    assert result.queue_url is None
    sqs = sqs_client(events_url)
    assert sqs.list_queues().get("QueueUrls", []) == []
    assert "QueueConfigurations" not in lake.get_bucket_notification_configuration(Bucket="lake")
    notification = result.steps[2].apply
    assert notification is not None
    assert notification["QueueConfigurations"][0]["Id"] == "s3drain-lake-in"
    sqs.close()


def test_the_existing_notification_configuration_is_kept(events_url: str, lake: Any) -> None:
    sqs = sqs_client(events_url)
    sns = service_client("sns", events_url)
    _, other_arn = make_queue(sqs, "someone-elses-queue")
    topic = sns.create_topic(Name="someone-elses-topic")["TopicArn"]
    existing = {
        "QueueConfigurations": [
            {
                "Id": "theirs",
                "QueueArn": other_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "other/"}]}},
            }
        ],
        "TopicConfigurations": [
            {"Id": "their-topic", "TopicArn": topic, "Events": ["s3:ObjectRemoved:*"]}
        ],
    }
    lake.put_bucket_notification_configuration(Bucket="lake", NotificationConfiguration=existing)
    result, _ = setup(events_url)
    assert result.steps[2].action == "added"
    assert "(2 others kept)" in result.steps[2].detail
    config = lake.get_bucket_notification_configuration(Bucket="lake")
    queues = {q["QueueArn"]: q for q in config["QueueConfigurations"]}
    assert set(queues) == {other_arn, result.queue_arn}
    assert queues[other_arn]["Filter"]["Key"]["FilterRules"][0]["Value"] == "other/"
    assert [t["TopicArn"] for t in config["TopicConfigurations"]] == [topic]
    assert config["TopicConfigurations"][0]["Events"] == ["s3:ObjectRemoved:*"]
    # And a second run still changes nothing.
    _, sent = setup(events_url)
    assert sent == []
    sqs.close()
    sns.close()


def test_the_eventbridge_switch_is_kept(events_localstack_url: str) -> None:
    # On LocalStack: moto stores the switch but leaves it out of GetBucketNotificationConfiguration,
    # so no client can keep it there (AWS returns it, as LocalStack does).
    s3 = s3_client(events_localstack_url)
    s3.create_bucket(Bucket="lake")
    s3.put_bucket_notification_configuration(
        Bucket="lake", NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    result, _ = setup(events_localstack_url)
    assert result.steps[2].apply is not None
    assert result.steps[2].apply["EventBridgeConfiguration"] == {}
    config = s3.get_bucket_notification_configuration(Bucket="lake")
    assert config["EventBridgeConfiguration"] == {}
    assert len(config["QueueConfigurations"]) == 1
    s3.close()


def test_an_existing_queue_keeps_its_other_policy_statements_and_attributes(
    events_url: str, lake: Any
) -> None:
    sqs = sqs_client(events_url)
    keep = {
        "Sid": "keep-me",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "sqs:ReceiveMessage",
        "Resource": "*",
    }
    queue_url, _ = make_queue(
        sqs,
        "s3drain-lake-in",
        Policy=json.dumps({"Version": "2012-10-17", "Statement": [keep]}),
        MessageRetentionPeriod="86400",
    )
    result, _ = setup(events_url, max_receive_count="3")
    assert result.queue_url == queue_url
    assert result.steps[1].action == "updated"
    queue = attributes(sqs, queue_url)
    sids = [s["Sid"] for s in json.loads(queue["Policy"])["Statement"]]
    assert sids == ["keep-me", plan.statement_id("lake")]
    assert queue["MessageRetentionPeriod"] == "86400"  # not ours to change
    assert int(json.loads(queue["RedrivePolicy"])["maxReceiveCount"]) == 3
    # A changed setting updates only what differs.
    again, sent = setup(events_url, max_receive_count="4")
    assert sent == ["SetQueueAttributes"]
    assert again.steps[1].detail == "s3drain-lake-in: RedrivePolicy"
    sqs.close()


@pytest.mark.parametrize(
    "case",
    [
        ("s3", "GetBucketNotificationConfiguration", "s3:GetBucketNotification", ""),
        ("sqs", "CreateQueue", "sqs:CreateQueue", ""),
        (
            "s3",
            "PutBucketNotificationConfiguration",
            "s3:PutBucketNotification",
            "dead-letter queue created, queue created",
        ),
    ],
)
def test_a_refused_step_names_its_permission(
    s3_url: str, s3: Any, case: tuple[str, str, str, str]
) -> None:
    service, operation, permission, done_before = case
    s3.create_bucket(Bucket="lake")

    def refuse(s3_client_: Any, sqs_client_: Any) -> None:
        deny(s3_client_ if service == "s3" else sqs_client_, service, operation)

    with pytest.raises(AccessDeniedError) as raised:
        setup(s3_url, hooks=refuse)
    assert raised.value.exit_code == ExitCode.DENIED
    assert int(ExitCode.DENIED) == 6
    assert permission in raised.value.message
    assert (f"done before it: {done_before}" in raised.value.message) == bool(done_before)
    # Granted, a second run finishes the rest.
    result, _ = setup(s3_url)
    assert result.steps[2].action in ("added", "unchanged")


def test_a_refused_update_of_an_existing_queue(s3_url: str, s3: Any) -> None:
    s3.create_bucket(Bucket="lake")
    setup(s3_url)
    with pytest.raises(AccessDeniedError) as raised:
        setup(
            s3_url,
            hooks=lambda _s3, sqs: deny(sqs, "sqs", "SetQueueAttributes"),
            max_receive_count="9",
        )
    assert "sqs:SetQueueAttributes" in raised.value.message


def test_a_missing_bucket_is_a_configuration_error(s3_url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        setup(s3_url)
    assert raised.value.exit_code == ExitCode.USAGE
    assert "does not exist" in raised.value.message
    assert sqs_client(s3_url).list_queues().get("QueueUrls", []) == []  # nothing made


# --- through the command line


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def cli_args(url: str, *more: str) -> list[str]:
    return ["events", "setup", "--bucket", "lake", "--prefix", "in/", "--endpoint-url", url, *more]


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.chdir(tmp_path)  # no config/.env of the developer's
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "secret-never-printed",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("cli_env")
def test_cli_setup_then_again(s3_url: str, s3: Any) -> None:
    s3.create_bucket(Bucket="lake")
    code, out, err = run_cli(cli_args(s3_url))
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split()[:3] == ["dead-letter", "queue", "created"]
    assert out.splitlines()[-1] == f"queue URL: {s3_url}/123456789012/s3drain-lake-in"
    code, out, _ = run_cli(cli_args(s3_url, "--json"))
    assert code == 0
    summary = json.loads(out)
    assert [s["action"] for s in summary["steps"]] == ["unchanged"] * 3
    assert summary["dry_run"] is False


@pytest.mark.usefixtures("cli_env")
def test_cli_dry_run_prints_json_and_changes_nothing(s3_url: str, s3: Any) -> None:
    s3.create_bucket(Bucket="lake")
    code, out, err = run_cli(cli_args(s3_url, "--dry-run"))
    assert (code, err) == (0, "")
    plan_json = json.loads(out)
    assert plan_json["dry_run"] is True
    assert plan_json["steps"][1]["apply"]["ReceiveMessageWaitTimeSeconds"] == "20"
    assert sqs_client(s3_url).list_queues().get("QueueUrls", []) == []


@pytest.mark.usefixtures("cli_env")
def test_cli_refused_step_is_one_line_and_exit_6(
    s3_url: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.create_bucket(Bucket="lake")
    real = make_sqs_client

    def denying(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)
        deny(client, "sqs", "CreateQueue")
        return client

    monkeypatch.setattr(cli_events, "make_sqs_client", denying)
    code, out, err = run_cli(cli_args(s3_url))
    assert code == 6
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("s3drain: error: CreateQueue on the queues was refused")
    assert "sqs:CreateQueue" in lines[0]
    assert lines[1].startswith("s3drain: hint: grant it")
    assert len(lines) == 2
    assert "Traceback" not in err
    assert "secret-never-printed" not in err


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--queue-name", "no spaces allowed", "not a queue name"),
        ("--max-receive-count", "0", "out of range"),
        ("--bucket-account", "12", "12-digit"),
        ("--sqs-endpoint-url", "localhost:9324", "not a URL"),
    ],
)
def test_cli_bad_settings_are_usage_errors(s3_url: str, flag: str, value: str, says: str) -> None:
    code, _, err = run_cli(cli_args(s3_url, f"{flag}={value}"))
    assert code == 2
    assert says in err
    assert "Traceback" not in err
