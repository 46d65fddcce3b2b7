"""One object from S3 to a durable local file, or nothing at all.

The temp file is born here (a hidden name beside the target), filled by one streamed GET or by
ranged GETs written at their offsets, verified (byte count, MD5 of a single-part ETag, botocore's
flexible checksum), fsynced, and linked in under its real name without replacing anything (the
deleter fsyncs the folder before the object's delete is sent). Any failure removes the temp
file; a crash leaves only a hidden temp file that the next run sweeps. Every GET carries
`If-Match` with the listed ETag, so all bytes come from the version that was listed and verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from botocore.httpchecksum import StreamingChecksumBody

from s3drain.errors import TransientError, error_code, http_status
from s3drain.local.fs import LocalFS
from s3drain.local.paths import XATTR_ETAG, is_temp_name, temp_name_for
from s3drain.records import ObjectRecord
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy

# 512 KiB reads: as cheap in CPU as 1 MiB (measured), while 32 threads streaming at once keep
# peak RSS near 75 MiB (1 MiB reads took it past 100 MiB, near the 128 MiB budget).
CHUNK = 512 * 1024
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
_SSE_WITHOUT_MD5_ETAG = ("aws:kms", "aws:kms:dsse")


class PathBlocked(Exception):
    """A file sits where a folder of the target path must be (`a` beside `a/b`)."""


class TargetExists(Exception):
    """Another file appeared at the target while the object downloaded; it was not replaced."""


class ObjectChanged(Exception):
    """The object was overwritten (412) or removed (404) after it was listed."""


class TempBusy(Exception):
    """Another run holds this object's temp file: it is downloading the same version."""


class Interrupted(Exception):
    """The run is stopping; this object was not finished and stays in S3."""


@dataclass(frozen=True)
class Downloaded:
    path: str
    verified: str  # md5, md5+crc32, size (multipart ETag ...), ...
    size: int
    version_id: str | None = None  # what the GET returned, in a versioned bucket


class GetSlots:
    """How many GETs may stream at once. A large object is split only into as many ranges as
    it can reserve idle slots for: with other objects keeping every connection busy, more
    ranges would buy nothing but requests (and, on servers that copy the whole object for
    each ranged GET, like moto, a whole-object copy each)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._taken = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def held(self, wanted: int) -> Iterator[int]:
        """Reserve up to `wanted` idle slots, at least one (this worker's own)."""
        with self._lock:
            granted = max(1, min(wanted, self.limit - self._taken))
            self._taken += granted
        try:
            yield granted
        finally:
            with self._lock:
                self._taken -= granted


def plan_ranges(size: int, part_size: int, slots: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges: one per slot, none smaller than `part_size`."""
    count = max(1, min(-(-size // part_size), slots))
    step = -(-size // count)
    return [(start, min(start + step, size) - 1) for start in range(0, size, step)]


@dataclass(frozen=True)
class Transfer:
    """Everything a download needs, built once per run and shared by the workers."""

    client: S3Client
    bucket: str
    retry: RetryPolicy
    fs: LocalFS
    part_pool: Executor
    multipart_threshold: int
    part_size: int
    stop: threading.Event
    slots: GetSlots


def download(t: Transfer, record: ObjectRecord, target: str) -> Downloaded:
    parent = os.path.dirname(target)
    try:
        t.fs.makedirs(parent)
    except (NotADirectoryError, FileExistsError) as exc:
        raise PathBlocked(f"a file is in the way of the folder {exc.filename or parent}") from None
    temp = temp_name_for(target, record.key, record.etag)
    try:
        fd = t.fs.create_temp(temp)
    except BlockingIOError:
        raise TempBusy("another s3drain run is downloading this object right now") from None
    placed = False
    try:
        verified, version_id = _fill(t, record, fd)
        t.fs.tag(fd, XATTR_ETAG, record.etag)
        t.fs.fsync(fd)
        try:
            t.fs.link_into_place(temp, target)
        except FileExistsError:
            raise TargetExists(f"a file appeared at {target} during the download") from None
        # The folder is fsynced by the deleter, once per batch, before any delete is sent.
        placed = True
    finally:
        if not placed:
            _remove_quietly(t.fs, temp)
        t.fs.close(fd)  # only now is the lock gone: no sweep ever takes a file being written
    return Downloaded(path=target, verified=verified, size=record.size, version_id=version_id)


def _remove_quietly(fs: LocalFS, path: str) -> None:
    with contextlib.suppress(OSError):  # the next run's sweep takes it
        fs.remove(path)


def _fill(t: Transfer, record: ObjectRecord, fd: int) -> tuple[str, str | None]:
    """Fill the temp file; return how it was verified and the version the GETs returned."""
    try:
        if record.size == 0 and record.etag == EMPTY_MD5:
            return "md5", None  # the ETag already proves the content: nothing to fetch
        wanted = -(-record.size // t.part_size) if record.size >= t.multipart_threshold else 1
        with t.slots.held(wanted) as granted:
            if granted > 1:
                ranges = plan_ranges(record.size, t.part_size, granted)
                return _fetch_ranged(t, record, fd, ranges)
            return _fetch_whole(t, record, fd)
    except ClientError as exc:
        if http_status(exc) == 412 or error_code(exc) == "PreconditionFailed":
            raise ObjectChanged("overwritten in S3 after it was listed") from None
        if http_status(exc) == 404 or error_code(exc) == "NoSuchKey":
            raise ObjectChanged("removed from S3 after it was listed") from None
        raise


def _get_params(t: Transfer, record: ObjectRecord) -> dict[str, Any]:
    params: dict[str, Any] = {"Bucket": t.bucket, "Key": record.key, "IfMatch": record.quoted_etag}
    if record.version_id is not None:
        params["VersionId"] = record.version_id
    return params


def _md5_applies(record: ObjectRecord, response: Mapping[str, Any]) -> bool:
    sse_kms = response.get("ServerSideEncryption") in _SSE_WITHOUT_MD5_ETAG
    return record.etag_is_md5 and not sse_kms and not response.get("SSECustomerAlgorithm")


def _flexible_checksum(body: object) -> str | None:
    """The algorithm botocore validated the body with, if it did."""
    if isinstance(body, StreamingChecksumBody):
        name = type(body.checksum).__name__
        return name.removeprefix("Crt").removesuffix("Checksum").lower()
    return None


def _label(record: ObjectRecord, md5_checked: bool, flexible: str | None) -> str:
    checks = [name for name, done in (("md5", md5_checked), (flexible, flexible)) if done]
    if checks:
        return "+".join(str(c) for c in checks)
    if record.is_multipart:
        return "size (multipart ETag: only the size was verified)"
    if record.etag_is_md5:
        return "size (SSE-KMS or SSE-C: the ETag is not an MD5)"
    return "size"


def _fetch_whole(t: Transfer, record: ObjectRecord, fd: int) -> tuple[str, str | None]:
    params = _get_params(t, record)

    def attempt() -> tuple[str, str | None]:
        t.fs.truncate(fd, 0)
        response = t.client.get_object(**params)
        body = response["Body"]
        flexible = _flexible_checksum(body)
        # One whole-object checksum is enough: when botocore validates S3's own (CRC32, SHA)
        # on this stream, an MD5 of the same bytes would only double the CPU per byte.
        digest = hashlib.md5() if flexible is None and _md5_applies(record, response) else None
        offset = 0
        try:
            # Read to the empty chunk: botocore validates a flexible checksum only at EOF.
            while chunk := body.read(CHUNK):
                t.fs.pwrite(fd, chunk, offset)
                offset += len(chunk)
                if digest is not None:
                    digest.update(chunk)
                if t.stop.is_set() and offset < record.size:
                    raise Interrupted
        finally:
            body.close()
        if offset != record.size:
            raise TransientError(f"received {offset} bytes, the listing said {record.size}")
        if digest is not None and digest.hexdigest() != record.etag:
            raise TransientError(f"MD5 {digest.hexdigest()} does not match ETag {record.etag}")
        return _label(record, digest is not None, flexible), response.get("VersionId")

    return t.retry.run(f"GetObject {record.key}", attempt)


class _OrderedDigest:
    """MD5 over parts that finish out of order: hashes the contiguous prefix as it grows, read
    back from the page cache, in the thread that waits on the parts anyway."""

    def __init__(self, fs: LocalFS, fd: int) -> None:
        self._fs = fs
        self._fd = fd
        self._digest = hashlib.md5()
        self._next = 0
        self._ready: dict[int, int] = {}

    def add(self, start: int, end: int) -> None:
        self._ready[start] = end
        while self._next in self._ready:
            stop = self._ready.pop(self._next)
            position = self._next
            while position < stop:
                data = self._fs.pread(self._fd, min(CHUNK, stop - position), position)
                if not data:
                    raise TransientError(f"the temp file ended at {position} bytes")
                self._digest.update(data)
                position += len(data)
            self._next = stop

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _fetch_ranged(
    t: Transfer, record: ObjectRecord, fd: int, plan: list[tuple[int, int]]
) -> tuple[str, str | None]:
    t.fs.allocate(fd, record.size)
    digest = _OrderedDigest(t.fs, fd) if record.etag_is_md5 else None
    abort = threading.Event()
    answers: list[_PartAnswer] = []
    # All at once: a GET slot was reserved for each range.
    running: dict[Future[None], tuple[int, int]] = {
        t.part_pool.submit(_fetch_part, t, record, fd, part, abort=abort, answers=answers): part
        for part in plan
    }
    try:
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                start, end = running.pop(future)
                future.result()
                if digest is not None:
                    digest.add(start, end + 1)
    except BaseException:
        abort.set()
        for future in running:
            future.cancel()
        wait(running)
        raise
    md5_checked = digest is not None and all(a.md5_applies for a in answers)
    if md5_checked and digest is not None and digest.hexdigest() != record.etag:
        raise TransientError(f"MD5 {digest.hexdigest()} does not match ETag {record.etag}")
    return _label(record, md5_checked, None), answers[0].version_id if answers else None


@dataclass(frozen=True)
class _PartAnswer:
    """What one ranged GET's headers said about the whole object."""

    md5_applies: bool
    version_id: str | None


def _fetch_part(
    t: Transfer,
    record: ObjectRecord,
    fd: int,
    part: tuple[int, int],
    *,
    abort: threading.Event,
    answers: list[_PartAnswer],
) -> None:
    start, end = part
    params = {**_get_params(t, record), "Range": f"bytes={start}-{end}"}
    expected_range = f"bytes {start}-{end}/{record.size}"

    def attempt() -> None:
        response = t.client.get_object(**params)
        body = response["Body"]
        try:
            if response.get("ContentRange") != expected_range:
                raise TransientError(
                    f"asked for {expected_range}, got {response.get('ContentRange') or 'no range'}"
                )
            answers.append(_PartAnswer(_md5_applies(record, response), response.get("VersionId")))
            offset = start
            while chunk := body.read(CHUNK):
                if offset + len(chunk) > end + 1:
                    raise TransientError(f"the server sent more than {expected_range}")
                t.fs.pwrite(fd, chunk, offset)
                offset += len(chunk)
                if abort.is_set() or t.stop.is_set():
                    raise Interrupted
        finally:
            body.close()
        if offset != end + 1:
            raise TransientError(f"part {expected_range} ended after {offset - start} bytes")

    t.retry.run(f"GetObject {record.key} bytes={start}-{end}", attempt)


def sweep_temp_files(root: str, fs: LocalFS) -> int:
    """Remove temp files a killed run left behind, before any download. Files another live
    run is writing (into a shared --raw-dir) are locked and stay."""
    removed = 0
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    elif is_temp_name(entry.name) and fs.remove_if_unlocked(entry.path):
                        removed += 1
        except (FileNotFoundError, NotADirectoryError):
            continue
    return removed
