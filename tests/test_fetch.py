"""`drain/fetch.py` against a scripted server: whole and ranged GETs, splits while a stream
runs, every full-object checksum combined across segments, resumes after a cut, and the ways a
fetch must fail (an overwrite, a stop, another version's bytes)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from awscrt import checksums as crt
from botocore.exceptions import ClientError

from s3drain.drain.fanout import FanOut, FixedStreams, StreamPolicy
from s3drain.drain.fetch import TAIL_STREAMS, Fetcher, fetch
from s3drain.drain.slots import Backlog, GetSlots
from s3drain.drain.verify import Interrupted, ObjectChanged
from s3drain.errors import TransientError
from s3drain.local.fs import LocalFS
from s3drain.records import ObjectRecord
from s3drain.s3.retry import RetryPolicy

MiB = 1024 * 1024


def b64(value: int, width: int) -> str:
    return base64.b64encode(value.to_bytes(width, "big")).decode()


CHECKSUMS: dict[str, Callable[[bytes], str]] = {
    "ChecksumCRC32": lambda d: b64(zlib.crc32(d), 4),
    "ChecksumCRC32C": lambda d: b64(crt.crc32c(d), 4),
    "ChecksumCRC64NVME": lambda d: b64(crt.crc64nvme(d), 8),
    "ChecksumSHA256": lambda d: base64.b64encode(hashlib.sha256(d).digest()).decode(),
}


class SlowBody:
    """A response body that hands out its bytes a little at a time, so a split can happen
    while it streams; `cut_at` ends it early (a reset mid-body)."""

    def __init__(self, data: bytes, delay: float, cut_at: int | None = None) -> None:
        self._data = data
        self._pos = 0
        self._delay = delay
        self._cut_at = cut_at
        self.closed = False

    def read(self, amount: int) -> bytes:
        time.sleep(self._delay)
        limit = len(self._data) if self._cut_at is None else self._cut_at
        chunk = self._data[self._pos : min(self._pos + amount, limit)]
        self._pos += len(chunk)
        return chunk

    def close(self) -> None:
        self.closed = True


@dataclass
class Server:
    """GetObject for one object: ETags, ranges, checksum headers; and scripted faults."""

    data: bytes
    etag: str = ""
    checksum_field: str | None = "ChecksumCRC32"
    delay: float = 0.04
    calls: list[dict[str, Any]] = field(default_factory=list)
    fault: Callable[[int, dict[str, Any]], Exception | None] | None = None
    cut_first_at: int | None = None
    sent_etag: str | None = None  # answer with another ETag (a server ignoring If-Match)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.etag = self.etag or hashlib.md5(self.data).hexdigest()

    def get_object(self, **params: Any) -> dict[str, Any]:
        with self.lock:
            self.calls.append(params)
            number = len(self.calls)
        if self.fault is not None and (error := self.fault(number, params)) is not None:
            raise error
        if params.get("IfMatch") != f'"{self.etag}"':
            refusal: Any = {
                "Error": {"Code": "PreconditionFailed"},
                "ResponseMetadata": {"HTTPStatusCode": 412},
            }
            raise ClientError(refusal, "GetObject")
        answer: dict[str, Any] = {"ETag": f'"{self.sent_etag or self.etag}"'}
        spec = params.get("Range")
        if spec is None:
            if self.checksum_field:
                answer[self.checksum_field] = CHECKSUMS[self.checksum_field](self.data)
            cut = self.cut_first_at if number == 1 else None
            answer["Body"] = SlowBody(self.data, self.delay, cut)
            return answer
        start, end = (int(n) for n in spec.removeprefix("bytes=").split("-"))
        answer["ContentRange"] = f"bytes {start}-{end}/{len(self.data)}"
        answer["Body"] = SlowBody(self.data[start : end + 1], self.delay)
        return answer

    def ranged(self) -> list[str]:
        return [c["Range"] for c in self.calls if "Range" in c]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def fetcher(
    server: Server,
    pool: ThreadPoolExecutor,
    *,
    streams: int = 4,
    part_size: int = MiB,
    threshold: int = 2 * MiB,
    stop: threading.Event | None = None,
    policy: StreamPolicy | None = None,
    backlog: Backlog | None = None,
) -> Fetcher:
    return Fetcher(
        client=server,  # type: ignore[arg-type]
        bucket="lake",
        retry=RetryPolicy(max_attempts=3, sleep=lambda _: None),
        fs=LocalFS(),
        pool=pool,
        multipart_threshold=threshold,
        part_size=part_size,
        stop=stop or threading.Event(),
        slots=GetSlots(8),
        streams=policy or FixedStreams(streams),
        backlog=backlog or Backlog(),
    )


def record_of(server: Server) -> ObjectRecord:
    return ObjectRecord("exports/big.bin", len(server.data), server.etag, datetime.now(UTC))


def run(f: Fetcher, server: Server, tmp_path: Path) -> tuple[Any, bytes]:
    path = tmp_path / "temp"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        verified = fetch(f, record_of(server), fd)
    finally:
        os.close(fd)
    return verified, path.read_bytes()


@pytest.mark.parametrize("field_name", sorted(CHECKSUMS))
def test_split_streams_reassemble_byte_exact_and_one_checksum_proves_them(
    tmp_path: Path, pool: ThreadPoolExecutor, field_name: str
) -> None:
    server = Server(os.urandom(9 * MiB + 321), checksum_field=field_name)
    verified, data = run(fetcher(server, pool, streams=4), server, tmp_path)

    assert data == server.data
    assert "Range" not in server.calls[0]  # every object starts with one whole GET
    assert 1 <= len(server.ranged()) <= 3  # the rest were split off while it streamed
    assert all(c["IfMatch"] == f'"{server.etag}"' for c in server.calls)
    name = field_name.removeprefix("Checksum").lower()
    assert verified.label == name and verified.checksums == f"{name}:{CHECKSUMS[field_name](data)}"


class OverlapFS(LocalFS):
    """Counts how many writes to one file are in progress at once (each takes a while)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self.most = 0
        self.writes = 0

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        with self._lock:
            self._active += 1
            self.most = max(self.most, self._active)
            self.writes += 1
        time.sleep(0.002)
        super().pwrite(fd, data, offset)
        with self._lock:
            self._active -= 1


def test_the_streams_of_one_object_write_its_file_one_at_a_time(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    # The kernel serialises them anyway; waiting for its lock spins, waiting for ours sleeps.
    server = Server(os.urandom(9 * MiB + 321), delay=0.01)
    fs = OverlapFS()
    f = replace(fetcher(server, pool, streams=4), fs=fs)
    verified, data = run(f, server, tmp_path)

    assert data == server.data and verified.label == "crc32"
    assert len(server.ranged()) >= 1  # more than one stream wrote
    assert fs.writes >= 18 and fs.most == 1


def test_without_a_checksum_the_md5_follows_the_split_bytes_in_order(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    server = Server(os.urandom(6 * MiB), checksum_field=None)
    verified, data = run(fetcher(server, pool, streams=3), server, tmp_path)
    assert data == server.data and server.ranged()
    assert verified.label == "md5" and verified.checksums == f"md5:{server.etag}"


def test_a_multipart_etag_without_a_checksum_is_proven_by_size_only(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    server = Server(os.urandom(3 * MiB), etag="a" * 32 + "-2", checksum_field=None)
    verified, data = run(fetcher(server, pool), server, tmp_path)
    assert data == server.data
    assert verified.label.startswith("size (multipart ETag") and verified.checksums is None


def test_no_range_is_ever_smaller_than_the_part_size(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    server = Server(os.urandom(5 * MiB))
    run(fetcher(server, pool, streams=8, part_size=2 * MiB), server, tmp_path)
    starts = sorted(int(r.removeprefix("bytes=").split("-")[0]) for r in server.ranged())
    bounds = [0, *starts, len(server.data)]
    assert all(b - a >= 2 * MiB for a, b in itertools.pairwise(bounds))


def test_a_split_while_a_read_is_in_flight_cuts_after_that_read(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    # The first read asks for a whole CHUNK (512 KiB) and is held until the object has been
    # split (a ranged GET asked for). With parts smaller than a CHUNK, a split from the
    # stream's position would end the stream inside the read in flight: the stream would write
    # past its end and the fetch fail ("did not all arrive") with every byte on disk.
    split = threading.Event()
    server = Server(os.urandom(900 * 1024), delay=0)

    def note_the_split(number: int, params: dict[str, Any]) -> Exception | None:
        if "Range" in params:
            split.set()
        return None

    server.fault = note_the_split
    original = Server.get_object

    def held_first_read(**params: Any) -> dict[str, Any]:
        answer = original(server, **params)
        if "Range" not in params:
            body = answer["Body"]
            read = body.read

            def after_the_split(amount: int) -> bytes:
                split.wait(5)
                body.read = read
                data: bytes = read(amount)
                return data

            body.read = after_the_split
        return answer

    server.get_object = held_first_read  # type: ignore[method-assign]
    f = fetcher(server, pool, streams=2, part_size=64 * 1024, threshold=256 * 1024)
    verified, data = run(f, server, tmp_path)
    assert split.is_set()  # the split came while the first read was held
    assert data == server.data and verified.label == "crc32"
    assert len(server.ranged()) == 1
    start = int(server.ranged()[0].removeprefix("bytes=").split("-")[0])
    assert start > 512 * 1024  # after the read in flight


def test_one_stream_never_splits(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    server = Server(os.urandom(4 * MiB))
    _, data = run(fetcher(server, pool, streams=1), server, tmp_path)
    assert data == server.data and server.ranged() == [] and len(server.calls) == 1


def test_a_small_object_is_one_get_in_the_worker(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    server = Server(b"small", delay=0)
    verified, data = run(fetcher(server, pool), server, tmp_path)
    assert data == b"small" and len(server.calls) == 1 and verified.label == "crc32"


def test_a_stream_cut_short_resumes_where_it_stopped(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    server = Server(os.urandom(3 * MiB), cut_first_at=MiB + 7, delay=0)
    verified, data = run(fetcher(server, pool, streams=1), server, tmp_path)
    assert data == server.data and verified.label == "crc32"
    assert server.calls[1]["Range"] == f"bytes={MiB + 7}-{3 * MiB - 1}"  # not from 0 again


def test_a_damaged_byte_fails_the_checksum(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    server = Server(os.urandom(3 * MiB))
    good = server.data
    server.data = good[:100] + bytes([good[100] ^ 1]) + good[101:]  # bytes differ, header not
    server.checksum_field = "ChecksumCRC32"
    original = Server.get_object

    def lying(self: Server, **params: Any) -> dict[str, Any]:
        answer = original(self, **params)
        if "ChecksumCRC32" in answer:
            answer["ChecksumCRC32"] = CHECKSUMS["ChecksumCRC32"](good)
        return answer

    server.get_object = lambda **p: lying(server, **p)  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="does not match"):
        run(fetcher(server, pool, streams=2), server, tmp_path)


def test_an_overwrite_mid_way_is_object_changed(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    server = Server(os.urandom(6 * MiB))

    def overwritten_before_the_second(number: int, params: dict[str, Any]) -> Exception | None:
        if number >= 2:
            server.etag = "b" * 32  # a new version: If-Match fails from now on
        return None

    server.fault = overwritten_before_the_second
    with pytest.raises(ObjectChanged):
        run(fetcher(server, pool, streams=4), server, tmp_path)


def test_another_versions_bytes_are_refused(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    server = Server(os.urandom(1000), sent_etag="c" * 32)  # a server ignoring If-Match
    with pytest.raises(ObjectChanged, match="another version"):
        run(fetcher(server, pool), server, tmp_path)


def test_a_stop_interrupts_every_stream(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    server = Server(os.urandom(8 * MiB), delay=0.1)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        run(fetcher(server, pool, streams=4, stop=stop), server, tmp_path)
    assert time.monotonic() - started < 2


def _tail() -> Backlog:
    backlog = Backlog()
    backlog.listed_all.set()
    return backlog


def test_in_the_runs_tail_a_large_object_takes_ranges_before_the_fan_out_has_measured(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    server = Server(os.urandom(8 * MiB))
    # A fan-out that has measured nothing yet wants one stream, for seconds.
    _, data = run(fetcher(server, pool, policy=FanOut(16), backlog=_tail()), server, tmp_path)
    assert data == server.data
    # Several ranges at once (as many as the idle slots and part sizes allow), not one stream.
    assert 3 <= len(server.ranged()) <= TAIL_STREAMS - 1


def test_while_objects_wait_to_start_the_fan_out_alone_decides(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    server = Server(os.urandom(8 * MiB))
    waiting = _tail()
    waiting.queued()  # another object is still to start
    _, data = run(fetcher(server, pool, policy=FanOut(16), backlog=waiting), server, tmp_path)
    assert data == server.data
    assert server.ranged() == []
