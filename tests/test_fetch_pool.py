"""Fetch processes (drain/fetch_pool.py, drain/fetch_process.py) against moto's HTTP server: a
fetched temp file arrives open and still locked, every failure comes back as the exception the
run knows, a process that dies or cannot start costs a retry and never an object, a stop ends
a stalled GET at once, and no fetch process outlives the run - not even one killed with -9."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)

from s3drain.drain.direct_fetch import Done, Failed, PathBlocked, TempBusy
from s3drain.drain.direct_switch import DirectSwitch
from s3drain.drain.fanout import FixedStreams
from s3drain.drain.fetch import Fetcher
from s3drain.drain.fetch_pool import FetchProcessBug, InlinePool, failure
from s3drain.drain.linker import Fetched
from s3drain.drain.process_pool import ProcessPool
from s3drain.drain.slots import GetSlots
from s3drain.drain.transfer import Transfer, download
from s3drain.drain.verify import Interrupted, ObjectChanged
from s3drain.errors import TransientError
from s3drain.local.fs import LocalFS
from s3drain.records import ObjectRecord
from s3drain.s3.breaker import is_connection_failure
from s3drain.s3.direct import Endpoint
from s3drain.s3.retry import RetryPolicy, is_retryable
from s3drain.s3.sigv4 import Credentials
from tests.support.proxy import FaultProxy
from tests.support.server import S3Client

BUCKET = "pool"


def _endpoint(url: str) -> Endpoint:
    netloc = url.split("://", 1)[1].rstrip("/")
    return Endpoint(
        "http", "127.0.0.1", int(netloc.rsplit(":", 1)[1]), netloc, f"/{BUCKET}", "us-east-1"
    )


def _record(key: str, body: bytes) -> ObjectRecord:
    return ObjectRecord(key, len(body), hashlib.md5(body).hexdigest(), datetime.now(UTC))


class Pools:
    def __init__(self, url: str) -> None:
        self.url = url
        self.requests = 0
        self.warnings: list[str] = []
        self.stop = threading.Event()
        self._made: list[ProcessPool | InlinePool] = []

    def count(self, n: int) -> None:
        self.requests += n

    def process(self, processes: int = 2, threads: int = 2, url: str | None = None) -> ProcessPool:
        pool = ProcessPool(
            _endpoint(url or self.url),
            processes=processes,
            threads=threads,
            credentials=lambda: Credentials("testing", "testing"),
            count=self.count,
            stop=self.stop,
            endpoint_url=url or self.url,
            warn=self.warnings.append,
        )
        self._made.append(pool)
        return pool

    def inline(self) -> InlinePool:
        pool = InlinePool(
            _endpoint(self.url),
            credentials=lambda: Credentials("testing", "testing"),
            count=self.count,
            stop=self.stop,
            endpoint_url=self.url,
        )
        self._made.append(pool)
        return pool

    def close(self) -> None:
        for pool in self._made:
            pool.close()


@pytest.fixture
def pools(s3_url: str, s3: S3Client) -> Iterator[Pools]:
    s3.create_bucket(Bucket=BUCKET)
    made = Pools(s3_url)
    yield made
    made.close()


def _put(s3: S3Client, key: str, body: bytes) -> ObjectRecord:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return _record(key, body)


def _proof(s3: S3Client, record: ObjectRecord) -> str:
    """What a verified download of this object must say proved it: S3's full-object CRC32
    (botocore puts one on every upload), else the MD5 of its ETag."""
    head = s3.head_object(Bucket=BUCKET, Key=record.key, ChecksumMode="ENABLED")
    crc = head.get("ChecksumCRC32")
    return f"crc32:{crc}" if crc else f"md5:{record.etag}"


def _children(pool: ProcessPool) -> list[subprocess.Popen[bytes]]:
    return [c.process for c in pool._children if c is not None]


@pytest.mark.parametrize("kind", ["process", "inline"])
def test_a_fetched_file_arrives_open_locked_verified_and_fsynced(
    pools: Pools, s3: S3Client, tmp_path: Path, kind: str
) -> None:
    pool = pools.process() if kind == "process" else pools.inline()
    records = [_put(s3, f"d{i % 3}/k{i}.csv", os.urandom(1000 + i)) for i in range(12)]
    for record in records:
        temp = str(tmp_path / "raw" / record.key.replace("/", "_") / ".s3drain-x.part")
        done, fd = pool.fetch(record, temp)
        try:
            assert done.verified.checksums == _proof(s3, record)
            assert os.fstat(fd).st_ino == os.stat(temp).st_ino == done.file.inode
            assert (
                Path(temp).read_bytes()
                == s3.get_object(Bucket=BUCKET, Key=record.key)["Body"].read()
            )
            other = os.open(temp, os.O_RDONLY)
            with pytest.raises(BlockingIOError):  # another run's sweep cannot take it
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.close(other)
        finally:
            os.close(fd)
    assert pools.requests == len(records)


@pytest.mark.parametrize("kind", ["process", "inline"])
def test_failures_come_back_as_the_runs_own_exceptions(
    pools: Pools, s3: S3Client, tmp_path: Path, kind: str
) -> None:
    pool = pools.process() if kind == "process" else pools.inline()
    record = _put(s3, "k.csv", b"current")
    stale = _record("k.csv", b"what was listed")
    with pytest.raises(ClientError) as changed:
        pool.fetch(stale, str(tmp_path / ".s3drain-a.part"))
    assert changed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    gone = _record("gone.csv", b"deleted meanwhile")
    with pytest.raises(ClientError) as missing:
        pool.fetch(gone, str(tmp_path / ".s3drain-b.part"))
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(PathBlocked):
        pool.fetch(record, str(tmp_path / "file" / ".s3drain-c.part"))
    held = os.open(tmp_path / ".s3drain-d.part", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    with pytest.raises(TempBusy):
        pool.fetch(record, str(tmp_path / ".s3drain-d.part"))
    os.close(held)
    os.chmod(tmp_path, 0o500)
    try:
        if os.geteuid() != 0:  # root writes anywhere
            with pytest.raises(OSError) as denied:
                pool.fetch(record, str(tmp_path / "sub" / ".s3drain-e.part"))
            assert denied.value.errno == errno.EACCES
    finally:
        os.chmod(tmp_path, 0o700)
    # Nothing half-written is left by any of them.
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == [".s3drain-d.part"]


def test_each_failure_kind_keeps_its_retry_and_breaker_meaning() -> None:
    url = "http://127.0.0.1:1"

    def made(kind: str, **more: object) -> Exception:
        return failure(Failed(1, kind, "why", 1, **more), url)  # type: ignore[arg-type]

    assert isinstance(made("link", code="connect"), EndpointConnectionError)
    assert isinstance(made("link", code="connect-timeout"), ConnectTimeoutError)
    assert isinstance(made("link", code="read-timeout"), ReadTimeoutError)
    assert isinstance(made("link", code="closed"), ConnectionClosedError)
    assert isinstance(made("link", code="ssl"), SSLError)
    for code in ("connect", "connect-timeout", "read-timeout", "closed"):
        exc = made("link", code=code)
        assert is_retryable(exc) and is_connection_failure(exc)
    assert not is_retryable(made("link", code="ssl"))
    slow = made("http", status=503, code="SlowDown")
    assert is_retryable(slow) and not is_connection_failure(slow)
    assert not is_retryable(made("http", status=403, code="AccessDenied"))
    assert isinstance(made("mismatch"), TransientError) and is_retryable(made("mismatch"))
    assert isinstance(made("changed"), ObjectChanged)
    assert isinstance(made("interrupted"), Interrupted)
    assert isinstance(made("busy"), TempBusy)
    assert isinstance(made("blocked"), PathBlocked)
    local = made("local", errno=errno.ENOSPC, filename="/x")
    assert isinstance(local, OSError) and local.errno == errno.ENOSPC and local.filename == "/x"
    assert isinstance(made("bug"), FetchProcessBug)


def test_a_killed_fetch_process_fails_its_jobs_as_closed_connections_and_is_replaced(
    pools: Pools, s3: S3Client, tmp_path: Path
) -> None:
    pool = pools.process(processes=1, threads=2)
    record = _put(s3, "k.csv", b"data" * 1000)
    _done, fd = pool.fetch(record, str(tmp_path / ".s3drain-1.part"))
    os.close(fd)
    (first,) = _children(pool)
    with FaultProxy(pools.url) as proxy:
        proxy.configure(fault_rate=1.0, fault_kinds=("stall",), stall_seconds=30)
        stalled = pools.process(processes=1, threads=2, url=proxy.url)
        outcome: list[BaseException] = []

        def fetch() -> None:
            try:
                stalled.fetch(record, str(tmp_path / ".s3drain-2.part"))
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=fetch)
        worker.start()
        deadline = time.monotonic() + 10
        while not _children(stalled) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        (victim,) = _children(stalled)
        victim.send_signal(signal.SIGKILL)
        worker.join(10)
        assert not worker.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], ConnectionClosedError)
        assert is_retryable(outcome[0])
        proxy.configure(fault_rate=0.0)
        _done, fd = stalled.fetch(record, str(tmp_path / ".s3drain-3.part"))
        os.close(fd)
        assert any("ended unexpectedly" in w for w in pools.warnings)
        assert _children(stalled)[0].pid != victim.pid
    assert first.poll() is None  # the other pool's process was not touched


def test_a_fetch_process_that_cannot_start_leaves_the_run_to_this_one(
    pools: Pools, s3: S3Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    pool = pools.process(processes=2)
    record = _put(s3, "k.csv", b"fetched here")
    done, fd = pool.fetch(record, str(tmp_path / ".s3drain-1.part"))
    os.close(fd)
    assert done.verified.checksums == _proof(s3, record)
    assert len(pools.warnings) == 2 and all("did not start" in w for w in pools.warnings)
    done, fd = pool.fetch(record, str(tmp_path / ".s3drain-2.part"))  # no further warning
    os.close(fd)
    assert len(pools.warnings) == 2


@pytest.mark.parametrize("kind", ["process", "inline"])
def test_a_stop_ends_a_stalled_get_at_once_and_leaves_no_temp_file(
    pools: Pools, s3: S3Client, tmp_path: Path, kind: str
) -> None:
    record = _put(s3, "big.bin", os.urandom(3_000_000))
    with FaultProxy(pools.url) as proxy:
        proxy.configure(latency=0.02)
        pools.url = proxy.url
        pool = pools.process(processes=1, threads=1) if kind == "process" else pools.inline()
        outcome: list[BaseException] = []

        def fetch() -> None:
            try:
                pool.fetch(record, str(tmp_path / ".s3drain-s.part"))
            except BaseException as exc:
                outcome.append(exc)

        proxy.configure(fault_rate=1.0, fault_kinds=("stall",), stall_seconds=60)
        worker = threading.Thread(target=fetch)
        worker.start()
        time.sleep(1.0)
        started = time.monotonic()
        pools.stop.set()
        worker.join(15)
        assert not worker.is_alive()
    # The fetch process cuts the connection of a GET still waiting for its answer: the run
    # does not wait out the 60 s read timeout, nothing is kept, nothing half-written stays.
    assert len(outcome) == 1 and isinstance(outcome[0], Interrupted)
    assert time.monotonic() - started < 5
    assert not (tmp_path / ".s3drain-s.part").exists()


def test_no_fetch_process_outlives_the_run_even_a_killed_one(
    s3_url: str, s3: S3Client, tmp_path: Path
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    body = b"x" * 100
    s3.put_object(Bucket=BUCKET, Key="k", Body=body)
    script = textwrap.dedent(
        f"""
        import os, sys, threading, time, hashlib
        from datetime import UTC, datetime
        from s3drain.drain.process_pool import ProcessPool
        from s3drain.records import ObjectRecord
        from s3drain.s3.direct import Endpoint
        from s3drain.s3.sigv4 import Credentials
        netloc = {s3_url.split("://", 1)[1]!r}
        pool = ProcessPool(
            Endpoint("http", "127.0.0.1", int(netloc.rsplit(":", 1)[1]), netloc, "/{BUCKET}", "us-east-1"),
            processes=2, threads=2, credentials=lambda: Credentials("testing", "testing"),
            count=lambda n: None, stop=threading.Event(), endpoint_url="x", warn=print,
        )
        record = ObjectRecord("k", 100, hashlib.md5(b"x" * 100).hexdigest(), datetime.now(UTC))
        pool.fetch(record, {str(tmp_path / ".s3drain-k.part")!r})
        print(*[c.process.pid for c in pool._children], flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def test_close_ends_every_fetch_process(pools: Pools, s3: S3Client, tmp_path: Path) -> None:
    pool = pools.process(processes=3)
    record = _put(s3, "k.csv", b"data")
    for n in range(6):
        _done, fd = pool.fetch(record, str(tmp_path / f".s3drain-{n}.part"))
        os.close(fd)
    processes = _children(pool)
    assert len(processes) == 3
    pool.close()
    assert all(p.poll() is not None for p in processes)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class _Refused:
    """A pool whose every GET S3 answers as botocore would not have been answered."""

    def __init__(self, status: int, code: str) -> None:
        self.status, self.code = status, code
        self.calls = 0

    def fetch(self, record: ObjectRecord, temp: str) -> tuple[Done, int]:
        self.calls += 1
        error: dict[str, Any] = {
            "Error": {"Code": self.code, "Message": "no"},
            "ResponseMetadata": {"HTTPStatusCode": self.status},
        }
        raise ClientError(error, "GetObject")  # type: ignore[arg-type]

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "SignatureDoesNotMatch"),
        (301, "PermanentRedirect"),
        (400, "AuthorizationHeaderMalformed"),
    ],
)
def test_an_answer_botocore_would_have_handled_hands_every_get_back_to_botocore(
    s3_url: str, s3: S3Client, tmp_path: Path, status: int, code: str
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    records = [_put(s3, f"k{i}.csv", f"body {i}".encode()) for i in range(3)]
    refused = _Refused(status, code)
    warnings: list[str] = []
    fs = LocalFS()
    fetcher = Fetcher(
        client=s3,
        bucket=BUCKET,
        retry=RetryPolicy(max_attempts=2, sleep=lambda _: None),
        fs=fs,
        pool=ThreadPoolExecutor(2),
        multipart_threshold=16 * 1024 * 1024,
        part_size=8 * 1024 * 1024,
        stop=threading.Event(),
        slots=GetSlots(4),
        streams=FixedStreams(1),
    )
    transfer = Transfer(fetcher, fs, refused, DirectSwitch(warnings.append))
    for record in records:
        target = str(tmp_path / record.key)
        got = download(transfer, record, target)
        assert isinstance(got, Fetched)
        os.link(got.temp, target)
        os.close(got.fd)
        assert (
            Path(target).read_bytes() == s3.get_object(Bucket=BUCKET, Key=record.key)["Body"].read()
        )
    assert refused.calls == 1  # the first answer turned direct GETs off for the run
    assert len(warnings) == 1 and code in warnings[0]
