"""`s3drain watch` when things go wrong around it: SQS unreachable for a few seconds (ridden
out) and for good (exit 5), a download that outlasts the visibility timeout while a second
watcher polls the same queue, a stop in the middle of an object, and two watchers sharing one
queue while 200 objects land. The real CLI as a subprocess against moto's HTTP server (its S3
notifies its SQS), with the fault proxy in front of SQS or S3."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.eventkit import sqs_client
from tests.support.proxy import FaultProxy
from tests.support.server import free_port, s3_client
from tests.support.watchkit import (
    BUCKET,
    PREFIX,
    CliWatcher,
    all_keys,
    by_key,
    cli_args,
    notify_queue,
    put,
    queue_depth,
    raw_tree,
    wait_until,
)
from tests.test_cli_e2e import cli_env, run_cli


@pytest.fixture
def lake(s3_url: str) -> Iterator[tuple[Any, Any, str]]:
    """s3://lake notifying a queue of every object created; (s3, sqs, queue URL)."""
    s3, sqs = s3_client(s3_url), sqs_client(s3_url)
    s3.create_bucket(Bucket=BUCKET)
    queue_url, _ = notify_queue(s3, sqs)
    yield s3, sqs, queue_url
    s3.close()
    sqs.close()


def test_sqs_unreachable_for_three_seconds_is_ridden_out(
    tmp_path: Path, s3_url: str, lake: tuple[Any, Any, str]
) -> None:
    """The outage starts before the watcher's first receive: --once must not take three
    seconds of refused connections for an empty queue."""
    s3, sqs, queue_url = lake
    objects = {f"{PREFIX}f{i}.csv": f"row {i}\n".encode() for i in range(6)}
    for key, body in objects.items():
        put(s3, key, body)
    base = tmp_path / "base"
    with FaultProxy(s3_url) as proxy:
        proxy.configure(fault_rate=1.0, fault_kinds=("reset_before",))
        watcher = CliWatcher(
            cli_args(base, queue_url, "--once", "--reconcile", "0", "--json"),
            cli_env(s3_url, AWS_ENDPOINT_URL_SQS=proxy.url),
        )
        try:
            wait_until(lambda: proxy.fault_counts().get("reset_before", 0) > 0, 20, "a receive")
            time.sleep(3)
            proxy.configure(fault_rate=0.0)
            run = watcher.finish()
        finally:
            watcher.kill()
        refused = proxy.fault_counts()["reset_before"]
    assert run.returncode == 0, run.stderr
    assert refused >= 2  # the receivers kept trying through the outage
    watch = json.loads(run.stdout)["watch"]
    assert watch["delivered"]["event"] == len(objects)
    assert raw_tree(base) == by_key(objects)
    assert all_keys(s3) == set()
    assert queue_depth(sqs, queue_url) == 0
    assert "Traceback" not in run.stderr


def test_sqs_unreachable_for_good_ends_with_exit_5_and_one_line(
    tmp_path: Path, s3_url: str, lake: tuple[Any, Any, str]
) -> None:
    s3, sqs, queue_url = lake
    put(s3, f"{PREFIX}waits.csv", b"for the next watcher")
    nothing_there = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    run = run_cli(
        cli_args(tmp_path / "base", queue_url, "--once", "--reconcile", "0", "-q"),
        cli_env(s3_url, AWS_ENDPOINT_URL_SQS=nothing_there),
        timeout=60,
    )
    took = time.monotonic() - started
    assert run.returncode == 5, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("s3drain: result: SQS unreachable since"), lines
    assert lines[0].endswith("come back to the queue (exit 5)"), lines
    assert run.stdout == ""
    assert took < 40  # the breaker's 10 s window, not the retries of every poll
    # Nothing was taken: the object waits in S3, its message in the queue.
    assert all_keys(s3) == {f"{PREFIX}waits.csv"}
    assert queue_depth(sqs, queue_url) == 2  # its event and S3's test event
