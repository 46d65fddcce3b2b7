"""One attempt at one object below --multipart-threshold, by a direct GET (`s3/direct.py`): the
folder, the locked temp file, the bytes written and proven, the fsync. The result names what
happened in plain data, so it can cross a process boundary (`fetch_process.py`) or stay in
this one (`fetch_pool.InlinePool`); `fetch_pool.py` turns a failure into the exception the rest
of the run knows, and `retry.py` decides about another attempt.

On success the temp file is handed over still open (and so still locked against another run's
sweep); on any failure it is removed and closed here.

Light on imports: the fetch processes use it.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

from s3drain.drain.verify import (
    CHUNK,
    EMPTY_MD5,
    Mismatch,
    ObjectChanged,
    Verified,
    check_etag,
    conclude,
    plan,
)
from s3drain.local.fs import LocalFS
from s3drain.records import FileId, ObjectRecord
from s3drain.s3.direct import Connection, HttpFailure, LinkFailure
from s3drain.s3.sigv4 import Credentials


class PathBlocked(Exception):
    """A file sits where a folder of the target path must be (`a` beside `a/b`)."""


class TempBusy(Exception):
    """Another run holds this object's temp file: it is downloading the same version."""


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    record: ObjectRecord
    temp: str  # the hidden temp name beside the target (`local/paths.temp_name_for`)
    credentials: Credentials


@dataclass(frozen=True, slots=True)
class Done:
    id: int
    verified: Verified
    file: FileId
    requests: int


@dataclass(frozen=True, slots=True)
class Failed:
    """kind: http, link, changed, mismatch, busy, blocked, local, interrupted or bug."""

    id: int
    kind: str
    message: str
    requests: int
    status: int = 0  # http
    code: str = ""  # http: S3's error code; link: connect, closed, read-timeout, ...
    errno: int = 0  # local
    filename: str | None = None  # local


Result = Done | Failed


def run(
    job: Job, conn: Connection, fs: LocalFS, stop: threading.Event
) -> tuple[Result, int | None]:
    """(Done, the open temp file) or (Failed, None)."""
    if stop.is_set():
        return _failed(job, "interrupted", "the run is stopping"), None
    opened = _open(job, fs)
    if isinstance(opened, Failed):
        return opened, None
    fd = opened
    result = _fill(job, conn, fs, fd, stop)
    if isinstance(result, Done):
        return result, fd
    with contextlib.suppress(OSError):  # the next run's sweep takes it
        fs.remove(job.temp)
    fs.close(fd)
    return result, None


def _open(job: Job, fs: LocalFS) -> int | Failed:
    """The folder (its parents fsynced when created) and the locked temp file."""
    folder = job.temp.rsplit("/", 1)[0]
    try:
        fs.makedirs(folder)
    except (NotADirectoryError, FileExistsError) as exc:
        return _failed(
            job, "blocked", f"a file is in the way of the folder {exc.filename or folder}"
        )
    except OSError as exc:
        return _local(job, exc, 0)
    try:
        return fs.create_temp(job.temp)
    except BlockingIOError:
        return _failed(job, "busy", "another s3drain run is downloading this object right now")
    except OSError as exc:
        return _local(job, exc, 0)


def _fill(job: Job, conn: Connection, fs: LocalFS, fd: int, stop: threading.Event) -> Result:
    requests = 0
    try:
        record = job.record
        if record.size == 0 and record.etag == EMPTY_MD5:
            verified = Verified("md5", f"md5:{EMPTY_MD5}", None)  # the ETag proves it
        else:
            requests = 1
            verified = _get(job, conn, fs, fd, stop)
        fs.fsync(fd)
        return Done(job.id, verified, fs.file_id(fd), requests)
    except HttpFailure as exc:
        return Failed(job.id, "http", exc.message, requests, exc.status, exc.code)
    except LinkFailure as exc:
        if stop.is_set():  # the run cut the connection to stop
            return _failed(job, "interrupted", "the run is stopping", requests)
        return Failed(job.id, "link", exc.message, requests, code=exc.kind)
    except ObjectChanged as exc:
        return _failed(job, "changed", str(exc), requests)
    except Mismatch as exc:
        return _failed(job, "mismatch", str(exc), requests)
    except _Stopped:
        return _failed(job, "interrupted", "the run is stopping", requests)
    except OSError as exc:
        return _local(job, exc, requests)
    except Exception:  # a bug: its traceback goes to the crash log, the object stays in S3
        return _failed(job, "bug", _traceback(), requests)


class _Stopped(Exception):
    pass


def _get(job: Job, conn: Connection, fs: LocalFS, fd: int, stop: threading.Event) -> Verified:
    record = job.record
    answer = conn.get(
        job.credentials,
        record.key,
        version_id=record.version_id,
        headers={"if-match": record.quoted_etag, "x-amz-checksum-mode": "ENABLED"},
    )
    try:
        check_etag(record, answer.fields)  # for servers that ignore If-Match
        p = plan(record, answer.fields)
        crc, inline = p.new_crc(), p.new_inline()
        position = 0
        while position < record.size:
            chunk = answer.read(min(CHUNK, record.size - position))
            if not chunk:
                raise Mismatch(f"the body ended at {position} of {record.size} bytes")
            fs.pwrite(fd, chunk, position)
            if crc is not None:
                crc.update(chunk)
            if inline is not None:
                inline.update(chunk)
            position += len(chunk)
            if stop.is_set() and position < record.size:
                raise _Stopped
        if not answer.finished and answer.read(1):
            raise Mismatch(f"the body is longer than the {record.size} bytes listed")
        return conclude(p, record, crc, inline, answer.fields)
    finally:
        answer.close()


def _failed(job: Job, kind: str, message: str, requests: int = 0) -> Failed:
    return Failed(job.id, kind, message, requests)


def _local(job: Job, exc: OSError, requests: int) -> Failed:
    return Failed(
        job.id,
        "local",
        exc.strerror or str(exc),
        requests,
        errno=exc.errno or 0,
        filename=exc.filename if isinstance(exc.filename, str) else None,
    )


def _traceback() -> str:
    import traceback  # noqa: PLC0415 - only after a bug; it costs a fetch process 20 ms to load

    return traceback.format_exc()
