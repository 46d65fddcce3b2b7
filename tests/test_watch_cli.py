"""`s3drain watch` as a user runs it: the real CLI as a subprocess against moto's HTTP server,
whose S3 sends real notifications to its SQS."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.eventkit import depth, make_queue, sqs_client
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import s3_client
from tests.test_cli_e2e import cli_env, run_cli

BUCKET = "lake"
PREFIX = "in/"
KEYS = [
    "in/plain.csv",
    "in/a b.csv",
    "in/a+b.csv",
    "in/100% done.csv",
    "in/%2B literally.csv",
    "in/ünïcödé 日本 🙂.csv",
    "in/deep/er/x=1&y=2;@:$,.csv",
]


@pytest.fixture
def lake(s3_url: str) -> Any:
    s3, sqs = s3_client(s3_url), sqs_client(s3_url)
    s3.create_bucket(Bucket=BUCKET)
    queue_url, queue_arn = make_queue(sqs, "lake-events")
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    yield s3, sqs, queue_url
    s3.close()
    sqs.close()


def watch_args(base: Path, queue_url: str, *more: str) -> list[str]:
    return [
        "watch",
        "--bucket",
        BUCKET,
        "--prefix",
        PREFIX,
        "--local-base-path",
        str(base),
        "--queue-url",
        queue_url,
        *more,
    ]


def test_once_drains_what_the_events_name_and_empties_the_queue(
    tmp_path: Path, s3_url: str, lake: Any
) -> None:
    s3, sqs, queue_url = lake
    for key in KEYS:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode() * 10)
    s3.put_object(Bucket=BUCKET, Key="out/not-ours.csv", Body=b"stays")
    base = tmp_path / "base"
    run = run_cli(
        watch_args(base, queue_url, "--once", "--reconcile", "0", "--json"),
        cli_env(s3_url, AWS_ENDPOINT_URL_SQS=s3_url),
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["command"] == "watch"
    watch = summary["watch"]
    assert watch["found"] == {"event": len(KEYS), "reconcile": 0}
    assert watch["delivered"]["event"] == len(KEYS)
    assert watch["messages"]["bad"] == 0
    assert watch["messages"]["ignored"] == 1  # out/ is not under the prefix
    assert watch["latency_seconds"]["count"] == len(KEYS)
    for key in KEYS:
        assert (base / "raw" / key[len(PREFIX) :]).read_bytes() == key.encode() * 10
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert [o["Key"] for o in listed] == ["out/not-ours.csv"]
    assert depth(sqs, queue_url) == 0


def test_once_drains_even_when_its_start_takes_longer_than_a_quiet_poll(
    tmp_path: Path, s3_url: str, lake: Any
) -> None:
    """Found by the fault suite's watch trials (`watching.py`, on a loaded machine): after a
    kill, the run's start (checks, probe, the recovery of the interrupted run) took longer
    than --once's quiet period (a long poll and a second), which was counted from before the
    start; --once then ended at its first look, before its first receive had answered, with
    the whole queue still there, and exit 0. Here the start is slow (3 s) and SQS answers
    in half a second."""
    s3, sqs, queue_url = lake
    for key in KEYS[:3]:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"waiting")
    first: list[str] = []

    def slow_start(info: RequestInfo) -> None:
        if not first:
            first.append(info.op)
            time.sleep(3.0)  # the checks and the probe: longer than --sqs-wait-seconds 1 + 1

    base = tmp_path / "base"
    with (
        FaultProxy(s3_url, before_forward=slow_start) as s3_proxy,
        FaultProxy(s3_url, latency=0.5) as sqs_proxy,
    ):
        run = run_cli(
            watch_args(base, queue_url, "--once", "--reconcile", "0", "--sqs-wait-seconds", "1"),
            cli_env(s3_proxy.url, AWS_ENDPOINT_URL_SQS=sqs_proxy.url),
        )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (base / "raw").iterdir()) == sorted(
        k[len(PREFIX) :] for k in KEYS[:3]
    )
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert depth(sqs, queue_url) == 0


def test_reconcile_finds_objects_uploaded_before_the_notifications(
    tmp_path: Path, s3_url: str
) -> None:
    s3, sqs = s3_client(s3_url), sqs_client(s3_url)
    s3.create_bucket(Bucket=BUCKET)
    for i in range(5):
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}early{i}.csv", Body=b"before")
    queue_url, queue_arn = make_queue(sqs, "lake-late")
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}late.csv", Body=b"after")
    base = tmp_path / "base"
    run = run_cli(
        watch_args(base, queue_url, "--once", "--json"),
        cli_env(s3_url, AWS_ENDPOINT_URL_SQS=s3_url),
    )
    assert run.returncode == 0, run.stderr
    watch = json.loads(run.stdout)["watch"]
    assert watch["reconcile_passes"] == 1
    assert watch["found"]["reconcile"] + watch["found"]["event"] >= 6
    assert watch["found"]["reconcile"] >= 5
    assert sorted(p.name for p in (base / "raw").iterdir()) == [
        *(f"early{i}.csv" for i in range(5)),
        "late.csv",
    ]
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert depth(sqs, queue_url) == 0


def test_no_queue_is_a_usage_error_that_changes_nothing(tmp_path: Path, s3_url: str) -> None:
    base = tmp_path / "base"
    run = run_cli(
        ["watch", "--bucket", BUCKET, "--prefix", PREFIX, "--local-base-path", str(base)],
        cli_env(s3_url),
    )
    assert run.returncode == 2
    assert "no queue to watch" in run.stderr and "Traceback" not in run.stderr
    assert not base.exists()
