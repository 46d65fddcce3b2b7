"""`s3drain watch` when things go wrong around it: SQS unreachable for a few seconds (ridden
out) and for good (exit 5), a download that outlasts the visibility timeout while a second
watcher polls the same queue, a stop in the middle of an object, two watchers sharing one queue
while 200 objects land, and an object that fails (its message comes back). Mostly the real CLI
as a subprocess against moto's HTTP server (its S3 notifies its SQS), with the fault proxy in
front of SQS or S3; the two watchers on LocalStack (see that test)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.support.eventkit import sqs_client
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import free_port, s3_client
from tests.support.watchkit import (
    BUCKET,
    PREFIX,
    CliWatcher,
    Watcher,
    all_keys,
    audit_statuses,
    by_key,
    cli_args,
    notify_queue,
    put,
    queue_depth,
    raw_tree,
    wait_until,
    watch_once,
    watch_settings,
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


class HeldGets:
    """A before_forward hook: logs every (operation, key), and holds the first GET of `key`
    (or the first request of `ops` for it) until
    `release` is set or `hold` seconds have passed."""

    def __init__(self, key: str, hold: float, ops: tuple[str, ...] = ("GetObject",)) -> None:
        self.key = key
        self.hold = hold
        self.ops = ops
        self.log: list[tuple[str, str]] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, info: RequestInfo) -> None:
        with self._lock:
            self.log.append((info.op, info.key))
            # A DeleteObjects names its keys in its body: the first after the key's GET.
            got = ("GetObject", self.key) in self.log
            ours = info.key == self.key or (info.op == "DeleteObjects" and got)
            first = info.op in self.ops and ours and not self.holding.is_set()
            if first:
                self.holding.set()
        if first:
            self.release.wait(self.hold)

    def gets(self, key: str) -> int:
        with self._lock:
            return self.log.count(("GetObject", key))


def watcher_behind(proxy: FaultProxy, base: Path, queue_url: str, s3_url: str) -> CliWatcher:
    """The CLI watching, its S3 requests through `proxy` (SQS direct), 30 s visibility."""
    return CliWatcher(
        cli_args(base, queue_url, "--visibility-timeout", "30", "--reconcile", "0", "--json"),
        cli_env(proxy.url, AWS_ENDPOINT_URL_SQS=s3_url),
    )


def summary(run: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(run.stdout)
    return document


def test_a_download_longer_than_the_visibility_timeout_stays_with_its_watcher(
    tmp_path: Path, s3_url: str, lake: tuple[Any, Any, str]
) -> None:
    """--visibility-timeout 10 and a GET held 15.5 s: the heartbeat keeps the message
    invisible, so a second watcher polling the same queue all that time never starts the
    object (one GET of it in the proxy's log)."""
    s3, sqs, queue_url = lake
    key = f"{PREFIX}big.bin"
    body = bytes(range(256)) * 4096  # 1 MiB
    put(s3, key, body)
    slow = HeldGets(key, hold=15.5)
    first, second = tmp_path / "first", tmp_path / "second"
    more = ("--visibility-timeout", "10", "--reconcile", "0", "--json")
    with FaultProxy(s3_url) as proxy:
        proxy.before_forward = slow
        env = cli_env(proxy.url, AWS_ENDPOINT_URL_SQS=s3_url)
        a = CliWatcher(cli_args(first, queue_url, *more), env)
        b: CliWatcher | None = None
        try:
            wait_until(slow.holding.is_set, 20, "the first watcher's GET")
            held_since = time.monotonic()
            b = CliWatcher(cli_args(second, queue_url, *more), env)
            wait_until((first / "raw" / "big.bin").exists, 30, "the download")
            assert time.monotonic() - held_since >= 15
            wait_until(lambda: queue_depth(sqs, queue_url) == 0, 20, "the message's delete")
            run_a, run_b = a.stop(), b.stop()
        finally:
            a.kill()
            if b is not None:
                b.kill()
    assert slow.gets(key) == 1, slow.log
    assert (run_a.returncode, run_b.returncode) == (130, 130), run_a.stderr + run_b.stderr
    assert raw_tree(first) == {"big.bin": body}
    assert raw_tree(second) == {}
    watch_a, watch_b = summary(run_a)["watch"], summary(run_b)["watch"]
    assert watch_a["delivered"]["event"] == 1
    assert watch_a["messages"]["visibility_lost"] == 0
    assert watch_b["found"] == {"event": 0, "reconcile": 0}
    assert all_keys(s3) == set()


def test_a_stop_mid_object_hands_its_message_back_at_once(
    tmp_path: Path, s3_url: str, lake: tuple[Any, Any, str]
) -> None:
    """SIGTERM while the object's GET is in flight: the message is visible again within a
    couple of seconds (not after its 30 s visibility timeout), the object's download stops
    (left in S3, as a drain leaves it at a stop), exit 130. The message that came back brings
    the object to the next watcher."""
    s3, sqs, queue_url = lake
    key = f"{PREFIX}midway.csv"
    put(s3, key, b"in flight at the stop")
    held = HeldGets(key, hold=30)
    base = tmp_path / "base"
    with FaultProxy(s3_url) as proxy:
        proxy.before_forward = held
        watcher = watcher_behind(proxy, base, queue_url, s3_url)
        try:
            wait_until(held.holding.is_set, 20, "the GET")
            watcher.send(signal.SIGTERM)
            stopped = time.monotonic()
            returned: list[dict[str, Any]] = []
            while not returned and time.monotonic() - stopped < 10:
                answer = sqs.receive_message(
                    QueueUrl=queue_url, WaitTimeSeconds=1, VisibilityTimeout=1
                )
                returned = [m for m in answer.get("Messages", []) if "midway" in m["Body"]]
            back_after = time.monotonic() - stopped
            held.release.set()
            run = watcher.finish()
        finally:
            watcher.kill()
    assert returned, "the message did not come back"
    assert back_after < 3, back_after
    assert run.returncode == 130, run.stderr
    watch = summary(run)["watch"]
    assert watch["messages"]["released"] == 1
    assert watch["messages"]["deleted"] == 1  # S3's test event, settled before the stop
    assert watch["messages"]["in_flight"] == 0
    assert "interrupted" in run.stderr
    assert raw_tree(base) == {}
    assert all_keys(s3) == {key}
    # The next watcher on the same base path gets the object from the message that came back.
    again = watch_once(watch_settings(base, s3_url, queue_url))
    assert again.code == 0, again.err
    assert (again.inbox.received, again.inbox.deleted) == (1, 1)
    assert raw_tree(base) == {"midway.csv": b"in flight at the stop"}
    assert all_keys(s3) == set()
    assert queue_depth(sqs, queue_url) == 0


def test_a_stop_while_a_delete_is_on_its_way_finishes_the_object_and_its_message(
    tmp_path: Path, s3_url: str, lake: tuple[Any, Any, str]
) -> None:
    """SIGTERM after the object is delivered, while its delete is held: the message is visible
    again at once (the stop cannot know the delete will go through), the delete goes through,
    and then the message leaves the queue too, instead of bringing a finished object to the
    next watcher."""
    s3, sqs, queue_url = lake
    key = f"{PREFIX}delivered.csv"
    put(s3, key, b"delivered before the stop")
    held = HeldGets(key, hold=30, ops=("DeleteObject", "DeleteObjects"))
    base = tmp_path / "base"
    with FaultProxy(s3_url) as proxy:
        proxy.before_forward = held
        watcher = watcher_behind(proxy, base, queue_url, s3_url)
        try:
            wait_until(held.holding.is_set, 20, "the delete")
            assert raw_tree(base) == {"delivered.csv": b"delivered before the stop"}
            watcher.send(signal.SIGTERM)
            wait_until(lambda: visible(sqs, queue_url) == 1, 3, "the message handed back")
            held.release.set()
            run = watcher.finish()
        finally:
            watcher.kill()
    assert run.returncode == 130, run.stderr
    messages = summary(run)["watch"]["messages"]
    assert messages["deleted"] == 2  # S3's test event, and this one after its release
    assert messages["released"] == 1
    assert messages["in_flight"] == 0
    assert all_keys(s3) == set()
    assert queue_depth(sqs, queue_url) == 0
    assert audit_statuses(base) == {key: ["downloaded"]}


def visible(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_two_watchers_on_one_queue_deliver_each_object_once(
    tmp_path: Path, events_localstack_url: str
) -> None:
    """Two watchers (two hosts: their own base paths) on one queue, started together; 200
    objects land while they run. Every object is delivered by exactly one of them.

    On LocalStack, whose S3 notifies its SQS: moto's ReceiveMessage takes no lock, and two
    receivers polling at once are now and then handed the same message (1 in ~1000 here),
    a duplicate delivery no consumer can tell from SQS's own at-least-once."""
    url = events_localstack_url
    s3, sqs = s3_client(url), sqs_client(url)
    s3.create_bucket(Bucket=BUCKET)
    queue_url, _ = notify_queue(s3, sqs)
    objects = {f"{PREFIX}d{i % 5}/f{i:03d}.csv": f"object {i}\n".encode() for i in range(200)}
    bases = [tmp_path / "first", tmp_path / "second"]
    env = cli_env(url, AWS_ENDPOINT_URL_SQS=url)
    watchers = [
        CliWatcher(cli_args(b, queue_url, "--reconcile", "0", "--json"), env) for b in bases
    ]
    try:
        for key, body in objects.items():
            put(s3, key, body)
        wait_until(lambda: not all_keys(s3), 60, "the bucket to empty", step=0.5)
        wait_until(lambda: queue_depth(sqs, queue_url) == 0, 30, "the queue to empty", step=0.5)
        runs = [w.stop() for w in watchers]
    finally:
        for w in watchers:
            w.kill()
    assert [r.returncode for r in runs] == [130, 130], [r.stderr for r in runs]
    trees = [raw_tree(b) for b in bases]
    assert set(trees[0]) & set(trees[1]) == set()
    assert trees[0] | trees[1] == by_key(objects)
    assert all(trees), "one watcher took everything: the test shows nothing about sharing"
    watches = [summary(r)["watch"] for r in runs]
    assert [w["delivered"]["event"] for w in watches] == [len(t) for t in trees]
    # One message per object and S3's test event, each received and deleted once.
    assert sum(w["messages"]["received"] for w in watches) == len(objects) + 1
    assert sum(w["messages"]["deleted"] for w in watches) == len(objects) + 1
    assert all_keys(s3) == set()
    s3.close()
    sqs.close()


def test_an_object_that_fails_leaves_its_message_to_come_back(
    tmp_path: Path, s3_url: str, lake: tuple[Any, Any, str]
) -> None:
    """Its GETs answer 500 until the retries run out: the object fails, its message is let go
    undeleted (no more heartbeats) and comes back after its 2 s visibility timeout; the watcher
    then delivers the object and deletes the message. In this process, S3 through the proxy."""
    s3, sqs, queue_url = lake
    key = f"{PREFIX}flaky.csv"
    put(s3, key, b"second time lucky")
    base = tmp_path / "base"
    with FaultProxy(s3_url) as proxy:
        proxy.configure(
            fault_rate=1.0, fault_kinds=("500",), fault_ops=frozenset({"GetObject"}), max_faults=2
        )
        settings = watch_settings(
            base, proxy.url, queue_url, sqs_url=s3_url, once=False, visibility_timeout=2
        )
        watcher = Watcher(
            replace(
                settings,
                drain=replace(settings.drain, s3=replace(settings.drain.s3, max_attempts=2)),
            )
        ).start()
        try:
            wait_until((base / "raw" / "flaky.csv").exists, 20, "the second attempt")
            wait_until(lambda: queue_depth(sqs, queue_url) == 0, 10, "the message's delete")
        finally:
            run = watcher.stop()
        assert proxy.fault_counts() == {"500": 2}
    assert run.code == 130, run.err
    assert audit_statuses(base) == {key: ["failed", "downloaded"]}
    assert run.inbox.left == 1
    assert "left: an object it names failed" in run.err
    assert (run.inbox.received, run.inbox.deleted) == (3, 2)  # its message twice, the test event
    assert raw_tree(base) == {"flaky.csv": b"second time lucky"}
    assert all_keys(s3) == set()
