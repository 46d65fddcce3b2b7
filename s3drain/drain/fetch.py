"""Fill a temp file with one object's bytes from S3, and prove they are its bytes.

Every object starts as one GET of the whole object, with If-Match on the listed ETag (and the
answer's own ETag checked, for servers that ignore If-Match). Its headers say how the bytes
will be proven: S3's full-object checksum (CRC64NVME, CRC32C, CRC32, SHA1, SHA256) where the
object has one, else the MD5 of a single-part ETag, else only the byte count.

A large object (--multipart-threshold) may get more streams while it downloads (`fanout.py`
decides how many): the segment with the most bytes not yet asked for is split after the read
it has in flight, its stream stops at the split, and a ranged GET takes the rest. Bytes are
written at their offsets. A CRC is computed per segment as the bytes arrive and the segments'
CRCs are combined at the end, so every byte is hashed once however the object was split; an
MD5 or SHA follows the first segment and reads the others back from the page cache. A stream
cut short resumes where it stopped (a ranged GET from its position) under the retry policy.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from s3drain.checksums import Crc, Hash
from s3drain.drain.fanout import StreamPolicy
from s3drain.drain.slots import Backlog, GetSlots
from s3drain.drain.verify import (
    CHUNK,
    EMPTY_MD5,
    Interrupted,
    Mismatch,
    ObjectChanged,
    Plan,
    Verified,
    check_etag,
    conclude,
    plan,
)
from s3drain.errors import TransientError, error_code, http_status
from s3drain.local.fs import LocalFS
from s3drain.records import ObjectRecord
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy

POLL_SECONDS = 0.1  # how often a large object's coordinator reconsiders its streams
# Streams the large objects of a run's tail share at least, before the fan-out has measured
# anything: a lone 1 GiB object would otherwise stream alone for the seconds the fan-out
# takes to learn (every peer uses ranges outright: the AWS CLI, rclone, s5cmd).
TAIL_STREAMS = 8
# A stream hands its bytes to the disk every this many. What is not yet handed over when the
# object's last byte arrives waits for the fsync: a 1 GiB object's last fsync took 0.09 s at
# 32 MiB, 0.045 at 16, 0.015-0.019 at 8 and 0.010 at 4 (8 streams, a loop device doing direct
# I/O, 3 runs each); below 8 the extra calls cost more than they save.
WRITE_BEHIND = 8 * 1024 * 1024


@dataclass(frozen=True)
class Fetcher:
    """Everything a fetch needs, built once per run and shared by the workers."""

    client: S3Client
    bucket: str
    retry: RetryPolicy
    fs: LocalFS
    pool: Executor  # a large object's streams run here; its worker coordinates them
    multipart_threshold: int
    part_size: int
    stop: threading.Event
    slots: GetSlots
    streams: StreamPolicy
    backlog: Backlog = field(default_factory=Backlog)
    # GetObject for the streams: botocore's, or direct GETs (`direct_streams.py`).
    get_object: Callable[..., Mapping[str, Any]] | None = None


@dataclass
class _Segment:
    start: int
    end: int  # exclusive; lowered when the segment is split
    pos: int
    # The end of the read in flight (pos when none): a split cuts after it, never inside it.
    claimed: int = 0
    crc: Crc | None = None
    future: Future[None] | None = None
    written_behind: int = -1  # bytes up to here were handed to the disk (`fs.write_behind`)


@dataclass
class _Job:
    """One object's fetch: its segments, and what its first answer said."""

    f: Fetcher
    record: ObjectRecord
    fd: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    # One stream writes to the file at a time. The kernel serialises a file's writes anyway
    # (its inode lock); streams queued there spin on the lock while the holder copies into the
    # page cache. On two cores with a slow copy that spin was 13-16 % of a 1 GiB drain's perf
    # samples, and system CPU 3.5-4.3 s against 2.4-3.1 s with this lock, the wall time no
    # worse. Here they wait asleep.
    writing: threading.Lock = field(default_factory=threading.Lock)
    segments: list[_Segment] = field(default_factory=list)
    learned: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)
    plan: Plan | None = None
    inline: Hash | None = None  # MD5/SHA over the first segment (bytes in order)
    answer: dict[str, Any] = field(default_factory=dict)  # the first answer's version, date

    def learn(self, response: Any) -> None:
        """The first answer: which checksum proves the object, its version and its date."""
        self.answer = {k: response.get(k) for k in ("VersionId", "LastModified")}
        self.plan = plan(self.record, response)
        for segment in self.segments:
            segment.crc = self.plan.new_crc()
        self.inline = self.plan.new_inline()
        self.learned.set()

    def params(self, segment: _Segment, whole: bool) -> dict[str, Any]:
        params: dict[str, Any] = {
            "Bucket": self.f.bucket,
            "Key": self.record.key,
            "IfMatch": self.record.quoted_etag,
        }
        if self.record.version_id is not None:
            params["VersionId"] = self.record.version_id
        if not whole:
            params["Range"] = self.span(segment)
        return params

    def span(self, segment: _Segment) -> str:
        """The bytes a (re)started stream asks for: from its position to its end now (a
        later split may still lower the end: the stream then stops early)."""
        with self.lock:
            return f"bytes={segment.pos}-{segment.end - 1}"


def fetch(f: Fetcher, record: ObjectRecord, fd: int) -> Verified:
    """Fill `fd` with the object; raises ObjectChanged (412/404), Interrupted (the run is
    stopping), TransientError or botocore's errors (after retries)."""
    if record.size == 0 and record.etag == EMPTY_MD5:
        # The ETag already proves the content: nothing to fetch.
        return Verified("md5", f"md5:{EMPTY_MD5}", None)
    job = _Job(f, record, fd, segments=[_Segment(0, record.size, 0)])
    try:
        with f.slots.held(1):
            if record.size < f.multipart_threshold:
                _stream(job, job.segments[0], first=True)
            else:
                f.fs.allocate(fd, record.size)
                with f.backlog.large():
                    _coordinate(job)
    except ClientError as exc:
        raise as_change(exc) or exc from None
    return _verify(job)


def as_change(exc: ClientError) -> ObjectChanged | None:
    """412 and 404 on a GET of the listed ETag: the object is not the one listed any more."""
    if http_status(exc) == 412 or error_code(exc) == "PreconditionFailed":
        return ObjectChanged("overwritten in S3 after it was listed")
    if http_status(exc) == 404 or error_code(exc) == "NoSuchKey":
        return ObjectChanged("removed from S3 after it was listed")
    return None


def _coordinate(job: _Job) -> None:
    """Run the streams of a large object in the pool, adding one when the policy wants more and
    a connection is idle; wait for all, raise the first failure after stopping the others."""
    f = job.f
    first = job.segments[0]
    first.future = f.pool.submit(_stream, job, first, True)
    extra_slots = 0
    try:
        while True:
            running = [
                s.future for s in job.segments if s.future is not None and not s.future.done()
            ]
            for segment in job.segments:
                if segment.future is not None and segment.future.done():
                    segment.future.result()  # a failed stream fails the object
            if not running:
                return
            wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            if not job.learned.is_set() or f.stop.is_set():
                continue
            floor = f.backlog.floor(TAIL_STREAMS)
            victim = _splittable(job, max(floor, f.streams.wanted(can_grow=False)))
            can_grow = victim is not None and f.slots.idle() > 0
            want = max(floor, f.streams.wanted(can_grow=can_grow))
            added = 0
            while victim is not None and len(running) + added < want and f.slots.take_idle():
                added += 1
            if victim is not None and added:
                extra_slots += added
                # Slots the split could not use (the rest too short for so many ranges) go back.
                unused = added - _split(job, victim, added + 1)
                f.slots.give_back(unused)
                extra_slots -= unused
    except BaseException:
        job.abort.set()
        wait([s.future for s in job.segments if s.future is not None])
        raise
    finally:
        f.slots.give_back(extra_slots)


def _splittable(job: _Job, level: int) -> _Segment | None:
    """The running segment with the most bytes left, if its rest can give two ranges of at
    least --part-size and is worth a request: a share of the object, not its last crumbs
    (each ranged GET costs a request, and on some servers a read of the whole object)."""
    with job.lock:
        live = [s for s in job.segments if s.future is not None and not s.future.done()]
        if not live:
            return None
        best = max(live, key=_unclaimed)
        worth = max(2 * job.f.part_size, job.record.size // (2 * max(level, 1)))
        return best if _unclaimed(best) >= worth else None


def _unclaimed(segment: _Segment) -> int:
    """Bytes of a segment no read has asked for yet: what a split can give away."""
    return segment.end - max(segment.pos, segment.claimed)


def _split(job: _Job, segment: _Segment, parts: int) -> int:
    """Cut the rest of `segment` into up to `parts` equal ranges of at least --part-size; its
    own stream keeps the first. Returns how many new streams were started."""
    with job.lock:
        left = _unclaimed(segment)
        start = segment.end - left
        parts = min(parts, left // job.f.part_size)
        if parts < 2:
            return 0
        bounds = [start + left * i // parts for i in range(parts + 1)]
        new = [_Segment(a, b, a) for a, b in itertools.pairwise(bounds[1:])]
        for rest in new:
            if segment.crc is not None:
                rest.crc = Crc(segment.crc.name)
        segment.end = bounds[1]  # its stream stops here
        job.segments.extend(new)
    for rest in new:
        rest.future = job.f.pool.submit(_stream, job, rest, False)
    return len(new)


def _stream(job: _Job, segment: _Segment, first: bool) -> None:
    """One stream: GET from the segment's position to its end (which a split may lower while
    it runs), writing at offsets; resumed from where it stopped on a retry."""
    f, record = job.f, job.record
    got_headers = False

    def attempt() -> None:
        nonlocal got_headers
        whole = first and not got_headers
        params = job.params(segment, whole)
        response = (f.get_object or f.client.get_object)(**params)
        body = response["Body"]
        try:
            check_etag(record, response)
            if whole:
                job.learn(response)
                got_headers = True
            elif (response.get("ContentRange") or "").split("/")[0] != (
                params["Range"].replace("=", " ")
            ):
                raise TransientError(
                    f"asked for {params['Range']}, got {response.get('ContentRange')}"
                )
            _read_body(job, segment, body)
        finally:
            body.close()

    f.retry.run(
        f"GetObject {record.key}" + (f" from {segment.start}" if not first else ""), attempt
    )


def _read_body(job: _Job, segment: _Segment, body: Any) -> None:
    f = job.f
    inline = job.inline if segment.start == 0 else None
    # A direct GET's body reads into one buffer per stream (`s3/http1.py`); botocore's returns
    # a new bytes per read.
    buffer = memoryview(bytearray(CHUNK)) if hasattr(body, "readinto") else None
    while True:
        with job.lock:
            want = min(CHUNK, segment.end - segment.pos)
            segment.claimed = segment.pos + want
        if want <= 0:
            return  # reached its end (perhaps lowered by a split): the rest is another's
        if buffer is not None:
            chunk: bytes | memoryview = buffer[: body.readinto(buffer[:want])]
        else:
            chunk = body.read(want)
        if not chunk:
            raise TransientError(f"the body ended at {segment.pos} of {job.record.size} bytes")
        with job.writing:
            f.fs.pwrite(job.fd, chunk, segment.pos)
        if segment.crc is not None:
            segment.crc.update(chunk)
        if inline is not None:
            inline.update(chunk)
        with job.lock:
            segment.pos += len(chunk)
        if segment.written_behind < 0:
            segment.written_behind = segment.pos - len(chunk)
        if segment.pos - segment.written_behind >= WRITE_BEHIND:
            f.fs.write_behind(job.fd, segment.written_behind, segment.pos - segment.written_behind)
            segment.written_behind = segment.pos
        f.streams.moved(len(chunk))
        if job.abort.is_set() or (f.stop.is_set() and segment.pos < segment.end):
            raise Interrupted


def _verify(job: _Job) -> Verified:
    record, segments = job.record, sorted(job.segments, key=lambda s: s.start)
    covered = 0
    for segment in segments:
        if segment.start != covered or segment.pos != segment.end:
            raise TransientError(f"bytes {covered}- of {record.size} did not all arrive")
        covered = segment.end
    if covered != record.size:
        raise TransientError(f"received {covered} bytes, the listing said {record.size}")
    assert job.plan is not None
    total = segments[0].crc
    if total is not None:  # a CRC per segment, combined
        for segment in segments[1:]:
            assert segment.crc is not None
            total = total.then(segment.crc)
    if job.inline is not None:
        _follow_rest(job, segments[0].end)
    try:
        return conclude(job.plan, record, total, job.inline, job.answer)
    except Mismatch as exc:
        raise TransientError(str(exc)) from None


def _follow_rest(job: _Job, start: int) -> None:
    """An MD5 or SHA cannot be combined: the bytes after the first segment are read back (from
    the page cache, just written) and hashed in order."""
    assert job.inline is not None
    position = start
    while position < job.record.size:
        data = job.f.fs.pread(job.fd, min(CHUNK, job.record.size - position), position)
        if not data:
            raise TransientError(f"the temp file ended at {position} bytes")
        job.inline.update(data)
        position += len(data)
