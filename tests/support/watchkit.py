"""Helpers for the `s3drain watch` tests: a watcher run in this process (`watch/run.run_watch`,
with short polls, a 0.2 s delete window and a stop event the test holds), a lake (bucket and
queue, S3 notifying the queue), message bodies as each route delivers them, and what is left in
the queue, the bucket and the local tree afterwards."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from s3drain.config.sqs import SqsSettings
from s3drain.drain.settings import DrainSettings
from s3drain.events.report import InboxCounters
from s3drain.watch.run import STATUS_EVERY, WatchResult, run_watch
from s3drain.watch.settings import WatchSettings
from s3drain.watch.stats import WatchFigures
from tests.support.drainkit import drain_settings
from tests.support.eventkit import make_queue

BUCKET = "lake"
PREFIX = "in/"
ROOT = Path(__file__).resolve().parents[2]


def watch_settings(
    base: Path,
    url: str,
    queue_url: str,
    *,
    sqs_url: str | None = None,
    once: bool = True,
    reconcile: float = 0.0,
    wait_seconds: int = 1,
    visibility_timeout: int = 30,
    receivers: int = 1,
    **drain: Any,
) -> WatchSettings:
    """A watcher's settings as the command line would build them, with short polls. One
    receiver by default: moto's ReceiveMessage takes no lock, and two receivers polling at
    once are now and then handed the same message, which would put one more in `received`."""
    values: dict[str, Any] = {
        "bucket": BUCKET,
        "prefix": PREFIX,
        "workers": 4,
        "delete_flush_seconds": 0.2,
        "endpoint_url": url,
        "addressing_style": "path",
    }
    values |= drain
    settings: DrainSettings = drain_settings(base, **values)
    sqs = SqsSettings(
        endpoint_url=sqs_url or url,
        queue_url=queue_url,
        wait_seconds=wait_seconds,
        visibility_timeout=visibility_timeout,
        receivers=receivers,
        max_in_flight=max(100, 4 * settings.workers),
    )
    return WatchSettings(settings, sqs, queue_url, reconcile=reconcile, once=once)


@dataclass
class Watched:
    """One watcher's run: its result and what it wrote."""

    result: WatchResult
    out: str
    err: str
    metrics: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def code(self) -> int:
        return int(self.result.drain.exit_code)

    @property
    def figures(self) -> WatchFigures:
        return self.result.figures

    @property
    def inbox(self) -> InboxCounters:
        return self.result.inbox

    def count(self, status: str) -> int:
        return int(self.result.drain.totals.counts.get(status, 0))


class Watcher:
    """`run_watch` in a thread of this process; `stop()` is SIGTERM's stop, `wait()` its end."""

    def __init__(
        self, settings: WatchSettings, *, status_every: float = STATUS_EVERY, sqs_client: Any = None
    ) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self._out = io.StringIO()
        self._err = io.StringIO()
        self._metrics: list[str] = []
        self._status_every = status_every
        self._sqs_client = sqs_client
        self._done: Watched | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        try:
            result = run_watch(
                self.settings,
                out=self._out,
                err=self._err,
                stop=self.stop_event,
                write_metrics=self._metrics.append,
                status_every=self._status_every,
                sqs_client=self._sqs_client,
            )
        except BaseException as exc:  # surfaced by wait()
            self._error = exc
            return
        self._done = Watched(
            result,
            self._out.getvalue(),
            self._err.getvalue(),
            list(self._metrics),
            time.monotonic() - started,
        )

    @property
    def metrics(self) -> list[str]:
        return list(self._metrics)

    def err_text(self) -> str:
        return self._err.getvalue()

    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> Watched:
        self.stop_event.set()
        return self.wait()

    def wait(self, timeout: float = 60.0) -> Watched:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.stop_event.set()
            self._thread.join(40)
            raise AssertionError(f"the watcher did not end within {timeout:.0f} s")
        if self._error is not None:
            raise self._error
        assert self._done is not None
        return self._done


def watch_once(settings: WatchSettings, timeout: float = 60.0, **kwargs: Any) -> Watched:
    """A `--once` run to its end."""
    return Watcher(replace(settings, once=True), **kwargs).start().wait(timeout)


def notify_queue(s3: Any, sqs: Any, name: str = "lake-events", **filters: str) -> tuple[str, str]:
    """A queue S3 notifies of every object created (under `filters`' prefix/suffix)."""
    queue_url, queue_arn = make_queue(sqs, name)
    config: dict[str, Any] = {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
    if filters:
        rules = [{"Name": name, "Value": value} for name, value in filters.items()]
        config["Filter"] = {"Key": {"FilterRules": rules}}
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": [config]}
    )
    return queue_url, queue_arn


# --- message bodies as each route delivers them -----------------------------------------------


def now_iso(offset: float = 0.0) -> str:
    moment = datetime.fromtimestamp(time.time() + offset, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def s3_record(
    key: str,
    *,
    size: int,
    etag: str,
    bucket: str = BUCKET,
    sequencer: str = "0055AED6DCD90281E5",
    event_name: str = "ObjectCreated:Put",
    event_time: str | None = None,
) -> dict[str, Any]:
    """One record as S3 writes it: the key form-encoded, as AWS does ('/' left alone)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": event_time or now_iso(),
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "s3drain",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "eTag": etag,
                "sequencer": sequencer,
            },
        },
    }


def s3_body(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def sns_envelope(inner: str) -> str:
    """SNS's envelope around S3's body (raw message delivery off)."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "378b08c8-8677-4c37-9fea-b784a77febae",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:lake-topic",
            "Subject": "Amazon S3 Notification",
            "Message": inner,
            "Timestamp": now_iso(),
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        }
    )


def eventbridge_body(key: str, *, size: int, etag: str, bucket: str = BUCKET) -> str:
    """EventBridge's Object Created event: the key as it is, not encoded."""
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": now_iso(),
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {"key": key, "size": size, "etag": etag, "sequencer": "617f08299329d189"},
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "reason": "PutObject",
            },
        }
    )


def s3_test_event_body(bucket: str = BUCKET) -> str:
    """S3's s3:TestEvent, sent when a notification configuration is saved."""
    return json.dumps(
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": now_iso(),
            "Bucket": bucket,
            "RequestId": "5582815E1AEA5ADF",
            "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
        }
    )


def put(s3: Any, key: str, body: bytes, bucket: str = BUCKET) -> tuple[int, str]:
    """Upload; (size, ETag without quotes) as an event would name them."""
    answer = s3.put_object(Bucket=bucket, Key=key, Body=body)
    return len(body), str(answer["ETag"]).strip('"')


def send(sqs: Any, queue_url: str, *bodies: str) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)


# --- what is left -------------------------------------------------------------------------------


def raw_tree(base: Path) -> dict[str, bytes]:
    """Files placed under base/raw (temp files would show too), by their key under PREFIX."""
    root = base / "raw"
    found: dict[str, bytes] = {}
    if not root.exists():
        return found
    for path in root.rglob("*"):
        if path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def audit_statuses(base: Path) -> dict[str, list[str]]:
    """key -> the statuses its audit lines give, in order."""
    path = base / ".s3drain" / "audit.jsonl"
    statuses: dict[str, list[str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            statuses.setdefault(entry["key"], []).append(entry["status"])
    return statuses


def all_keys(s3: Any, bucket: str = BUCKET) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Visible and in-flight messages. Approximate on AWS; exact on moto and LocalStack."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(found.get(name, 0)) for name in names)


def bodies_left(sqs: Any, queue_url: str) -> list[str]:
    """The bodies of every message in the queue, received and made visible again at once
    (only messages visible now are seen)."""
    seen: dict[str, str] = {}
    handles: list[str] = []
    for _ in range(5):
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            break
        for message in messages:
            seen[message["MessageId"]] = message["Body"]
            handles.append(message["ReceiptHandle"])
    for handle in handles:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    return list(seen.values())


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> float:
    """Seconds it took `check` to hold; an AssertionError naming `what` after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - started


def under_prefix(keys: Iterable[str]) -> set[str]:
    return {k[len(PREFIX) :] for k in keys}


def by_key(objects: Mapping[str, bytes]) -> dict[str, bytes]:
    """{key under PREFIX: bytes}, as raw_tree names them."""
    return {k[len(PREFIX) :]: v for k, v in objects.items()}


# --- the command line -----------------------------------------------------------------------


def cli_args(base: Path, queue_url: str, *more: str) -> list[str]:
    """`s3drain watch` on s3://lake/in/ with short polls (--sqs-wait-seconds 1)."""
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
        "--sqs-wait-seconds",
        "1",
        *more,
    ]


class CliWatcher:
    """`python -m s3drain watch ...` as a process of its own, stopped by a signal."""

    def __init__(self, args: list[str], env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "s3drain", *args],
            env=dict(env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Its exit code and output, once it ended (killed after `timeout`)."""
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            raise AssertionError(
                f"the watcher did not exit within {timeout:.0f} s:\n{err}"
            ) from None
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)

    def stop(self, signum: int = signal.SIGTERM) -> subprocess.CompletedProcess[str]:
        if self.process.poll() is None:
            self.send(signum)
        return self.finish()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
