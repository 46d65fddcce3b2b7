"""One object from S3 to a durable local file, or nothing at all.

The temp file is born here (a hidden name beside the target), filled and verified by
`fetch.py`, fsynced, and compared with a local file where the decision asked for it; then,
still open, it goes to `linker.py`, which records it in the ledger (staged) and only then links
it in under its real name without replacing anything (the deleter fsyncs the folder before the
row says "delivered"). Any failure here removes the temp file; a crash leaves only a hidden
temp file that the next run sweeps.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace

from botocore.exceptions import ClientError

from s3drain.drain.core_pin import CorePin
from s3drain.drain.direct_fetch import PathBlocked, TempBusy
from s3drain.drain.direct_switch import DirectSwitch, botocore_would_handle
from s3drain.drain.fetch import Fetcher, as_change, fetch
from s3drain.drain.fetch_pool import FetchPool
from s3drain.drain.linker import Fetched
from s3drain.drain.verify import Verified
from s3drain.errors import describe, error_code, http_status
from s3drain.local.fs import LocalFS
from s3drain.local.paths import is_temp_name, temp_name_for
from s3drain.records import UNKNOWN_TIME, FileId, ObjectRecord


@dataclass(frozen=True)
class Matched:
    """The fetched bytes equal this local file's: it is the object (no link, no new file)."""

    path: str
    verified: str
    version_id: str | None


@dataclass(frozen=True)
class Transfer:
    """Everything a download needs, built once per run and shared by the workers."""

    fetcher: Fetcher
    fs: LocalFS
    pool: FetchPool | None = None  # direct GETs for objects below the multipart threshold
    # Off at the first answer botocore would have handled itself: botocore from then on.
    switch: DirectSwitch = field(default_factory=lambda: DirectSwitch(lambda _: None))
    pin: CorePin | None = None  # the run's threads on one core while its objects are small


class LocalDiffers(Exception):
    """The object was fetched to be compared with a local file, and the bytes differ."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def download(
    t: Transfer, record: ObjectRecord, target: str, compare_with: tuple[str, ...] = ()
) -> Fetched | Matched:
    """Fetch, verify and fsync the object in a temp file. Where `compare_with` names local files
    whose content could not be proven otherwise, their bytes are compared first: an equal one is
    the object (Matched; the temp file goes); a different one at `target` is a conflict
    (LocalDiffers). Otherwise the temp file, still open and locked, goes to the linker
    (`linker.py`), which records it in the ledger and then gives it its real name."""
    if t.pin is not None:
        t.pin.started(record.size)
    temp = temp_name_for(target, record.key, record.etag)
    small = record.size < t.fetcher.multipart_threshold
    got = None
    if t.pool is not None and small and t.switch.on:
        got = _fetch_direct(t, t.pool, record, temp)
    fd, verified, file = got or _fetch_here(t, record, target, temp)
    handed_over = False
    try:
        for path in compare_with:
            if t.fs.same_bytes(fd, path):
                return Matched(path, f"bytes ({verified.label})", verified.version_id)
        if target in compare_with:
            raise LocalDiffers(target)
        fetched = Fetched(
            _as_answered(record, verified),
            fd,
            temp,
            target,
            file,
            verified,
        )
        handed_over = True
        return fetched
    finally:
        if not handed_over:
            _remove_quietly(t.fs, temp)
            t.fs.close(fd)  # only now is the lock gone: no sweep ever takes a file being written


def _as_answered(record: ObjectRecord, verified: Verified) -> ObjectRecord:
    """The object as its GET answered: its version; and its date where no listing gave one
    (an object named by an event), so the ledger's row is as exact as a listed one's."""
    modified = record.last_modified
    if modified == UNKNOWN_TIME and verified.last_modified is not None:
        modified = verified.last_modified
    return replace(
        record, version_id=verified.version_id or record.version_id, last_modified=modified
    )


def _fetch_direct(
    t: Transfer, pool: FetchPool, record: ObjectRecord, temp: str
) -> tuple[int, Verified, FileId] | None:
    """A small object by a direct GET (`fetch_pool.py`), each attempt under the retry policy;
    the folder and the temp file are made where the GET runs. None: botocore must fetch it."""
    try:
        done, fd = t.fetcher.retry.run(f"GetObject {record.key}", lambda: pool.fetch(record, temp))
    except ClientError as exc:
        if botocore_would_handle(http_status(exc), error_code(exc)):
            t.switch.turn_off(describe(exc))
            return None
        raise as_change(exc) or exc from None
    return fd, done.verified, done.file


def _fetch_here(
    t: Transfer, record: ObjectRecord, target: str, temp: str
) -> tuple[int, Verified, FileId]:
    parent = os.path.dirname(target)
    try:
        t.fs.makedirs(parent)
    except (NotADirectoryError, FileExistsError) as exc:
        raise PathBlocked(f"a file is in the way of the folder {exc.filename or parent}") from None
    try:
        fd = t.fs.create_temp(temp)
    except BlockingIOError:
        raise TempBusy("another s3drain run is downloading this object right now") from None
    try:
        verified = fetch(t.fetcher, record, fd)
        t.fs.fsync(fd)
        return fd, verified, t.fs.file_id(fd)
    except BaseException:
        _remove_quietly(t.fs, temp)
        t.fs.close(fd)
        raise


def _remove_quietly(fs: LocalFS, path: str) -> None:
    with contextlib.suppress(OSError):  # the next run's sweep takes it
        fs.remove(path)


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
