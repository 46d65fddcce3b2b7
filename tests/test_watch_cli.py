"""`s3drain watch` as a user runs it: the real CLI as a subprocess against moto's HTTP server,
whose S3 sends real notifications to its SQS: --once, reconcile passes, a running watcher
stopped by Ctrl-C, its summary (text and JSON), its metrics file and status lines."""

from __future__ import annotations

import itertools
import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.eventkit import TRICKY_KEYS, depth, make_queue, sqs_client
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import s3_client
from tests.support.watchkit import (
    CliWatcher,
    Watcher,
    all_keys,
    cli_args,
    notify_queue,
    put,
    raw_tree,
    wait_until,
    watch_settings,
)
from tests.test_cli_e2e import cli_env, run_cli

BUCKET = "lake"
PREFIX = "in/"
KEYS = TRICKY_KEYS


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
        # One receiver: two could be handed one message at once by moto (no lock there).
        watch_args(base, queue_url, "--once", "--reconcile", "0", "--json", "--sqs-receivers", "1"),
        cli_env(s3_url, AWS_ENDPOINT_URL_SQS=s3_url),
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["command"] == "watch"
    assert summary["objects"]["downloaded"] == len(KEYS) and summary["exit_code"] == 0
    watch = summary["watch"]
    assert watch["found"] == {"event": len(KEYS), "reconcile": 0}
    assert watch["delivered"] == {"event": len(KEYS), "reconcile": 0}
    assert (watch["reconcile_passes"], watch["filtered_events"], watch["merged_events"]) == (
        0,
        0,
        0,
    )
    # One message per object, out/'s and S3's test event: all of them deleted.
    assert watch["messages"] == {
        "received": len(KEYS) + 2,
        "deleted": len(KEYS) + 2,
        "left": 0,
        "bad": 0,
        "test_events": 1,
        "ignored": 1,  # out/ is not under the prefix
        "released": 0,
        "visibility_lost": 0,
        "delete_failed": 0,
        "in_flight": 0,
        "oldest_age_seconds": None,
    }
    latency = watch["latency_seconds"]
    assert latency["count"] == len(KEYS)
    assert 0 < latency["p50"] <= latency["p95"] < 60
    assert latency["sum"] >= latency["p50"]
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


def test_lanes_are_refused_for_a_watcher_and_change_nothing(tmp_path: Path, s3_url: str) -> None:
    base = tmp_path / "base"
    run = run_cli(
        [
            *("watch", "--bucket", BUCKET, "--prefix", PREFIX, "--local-base-path", str(base)),
            *("--queue-url", "http://127.0.0.1:1/queue/q", "--lanes", "2"),
        ],
        cli_env(s3_url),
    )
    assert run.returncode == 2, run.stderr
    assert "watch runs in one process: --lanes 2 is for drains" in run.stderr
    assert "Traceback" not in run.stderr
    assert not base.exists()


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text file, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.index("}")]))
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_running_watcher_reconciles_refreshes_its_metrics_and_stops_on_sigint(
    tmp_path: Path, s3_url: str
) -> None:
    """No --once, --reconcile 2s: an object S3 sends no event for (the notification takes
    *.csv only) is found by a listing pass; the metrics file is written while the watcher runs
    (every 10 s); Ctrl-C ends it with 130 and a summary saying what each source found."""
    s3, sqs = s3_client(s3_url), sqs_client(s3_url)
    s3.create_bucket(Bucket=BUCKET)
    queue_url, _ = notify_queue(s3, sqs, suffix=".csv")
    base, metrics = tmp_path / "base", tmp_path / "metrics" / "watch.prom"
    with FaultProxy(s3_url) as proxy:  # no faults: it counts the listing passes
        watcher = CliWatcher(
            cli_args(base, queue_url, "--reconcile", "2s", "--metrics-file", str(metrics)),
            cli_env(proxy.url, AWS_ENDPOINT_URL_SQS=s3_url),
        )
        try:
            wait_until(lambda: proxy.counts().get("ListObjectsV2", 0) >= 1, 20, "the first pass")
            # Right after a pass: its event has come long before the next pass lists it.
            put(s3, f"{PREFIX}evented.csv", b"named by its event")
            wait_until((base / "raw" / "evented.csv").exists, 10, "the event's object")
            put(s3, f"{PREFIX}silent.dat", b"no event for this one")
            wait_until((base / "raw" / "silent.dat").exists, 10, "the pass's object")
            wait_until(
                lambda: (
                    metrics.exists()
                    and metric(
                        metrics.read_text(), "s3drain_watch_delivered_objects", source="reconcile"
                    )
                    == 1
                    and metric(metrics.read_text(), "s3drain_watch_messages", outcome="deleted")
                    == 2
                ),
                25,
                "the metrics file",
            )
            assert watcher.process.poll() is None  # written while watching
            during = metrics.read_text()
            run = watcher.stop(signal.SIGINT)
        finally:
            watcher.kill()
        passes = proxy.counts()["ListObjectsV2"]
    assert metric(during, "s3drain_watch_found_objects", source="event") == 1
    assert metric(during, "s3drain_watch_messages", outcome="deleted") == 2  # and the test event
    assert metric(during, "s3drain_watch_reconcile_passes", bucket=BUCKET, prefix=PREFIX)
    assert run.returncode == 130, run.stderr
    found = re.search(r"found +events (\d+), reconcile passes (\d+) found (\d+);", run.stdout)
    assert found, run.stdout
    assert (int(found[1]), int(found[3])) == (1, 1)
    assert 2 <= int(found[2]) <= passes
    assert "s3drain: watch: 2 delivered (events 1 found, reconcile 1)" in run.stderr
    assert raw_tree(base) == {
        "evented.csv": b"named by its event",
        "silent.dat": b"no event for this one",
    }
    assert all_keys(s3) == set()
    assert depth(sqs, queue_url) == 0
    after = metrics.read_text()  # the run's own figures and the watcher's, at the end
    assert metric(after, "s3drain_watch_found_objects", source="reconcile") == 1
    assert "s3drain_last_run_exit_code" in after or "s3drain_" in after.replace(
        "s3drain_watch_", ""
    )


def test_status_lines_and_metrics_while_watching(tmp_path: Path, s3_url: str, lake: Any) -> None:
    """In this process with a 0.3 s status interval: the figures are written, and a status line
    logged, as they change, before the watcher ends."""
    s3, _, queue_url = lake
    watcher = Watcher(
        watch_settings(tmp_path / "base", s3_url, queue_url, once=False), status_every=0.3
    ).start()
    try:
        put(s3, f"{PREFIX}one.csv", b"1")
        wait_until(
            lambda: any(
                metric(m, "s3drain_watch_delivered_objects", source="event") == 1
                and metric(m, "s3drain_watch_messages", outcome="deleted") == 2
                for m in watcher.metrics
            ),
            15,
            "a metrics text with the delivery and the deletes",
        )
        assert watcher.running()
        assert "s3drain: watch: 1 delivered (events 1 found, reconcile 0)" in watcher.err_text()
        time.sleep(1.0)  # three intervals in which nothing moves
    finally:
        run = watcher.stop()
    assert run.code == 130
    first, last = run.metrics[0], run.metrics[-1]
    assert metric(first, "s3drain_watch_delivered_objects", source="event") == 0
    assert metric(last, "s3drain_watch_messages", outcome="deleted") == 2  # and the test event
    assert metric(last, "s3drain_watch_messages_in_flight") == 0
    assert metric(last, "s3drain_watch_latency_seconds_count") is not None
    # The file is written every interval; a status line only when the figures moved.
    lines = [line for line in run.err.splitlines() if line.startswith("s3drain: watch: ")]
    assert all(a != b for a, b in itertools.pairwise(lines)), lines
    assert len(run.metrics) >= len(lines) + 3
    assert lines[-1].startswith("s3drain: watch: 1 delivered") and "0 held" in lines[-1]
