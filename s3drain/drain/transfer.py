"""One object from S3 to a durable local file, or nothing at all.

The temp file is born here (a hidden name beside the target), filled and verified by
`fetch.py`, fsynced, compared with a local file where the decision asked for it, recorded in
the ledger (staged), and only then linked in under its real name without replacing anything
(the deleter fsyncs the folder before the row says "delivered"). Any failure removes the temp
file; a crash leaves only a hidden temp file that the next run sweeps.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace

from s3drain.drain.fetch import Fetcher, fetch
from s3drain.local.fs import LocalFS
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_rows import NewDelivery
from s3drain.local.paths import is_temp_name, temp_name_for
from s3drain.records import ObjectRecord


class PathBlocked(Exception):
    """A file sits where a folder of the target path must be (`a` beside `a/b`)."""


class TargetExists(Exception):
    """Another file appeared at the target while the object downloaded; it was not replaced."""


class TempBusy(Exception):
    """Another run holds this object's temp file: it is downloading the same version."""


@dataclass(frozen=True)
class Downloaded:
    path: str
    verified: str  # crc32, md5, size (multipart ETag ...), ...
    size: int
    version_id: str | None = None  # what the GET returned, in a versioned bucket
    delivery_id: int | None = None  # the ledger's staged row
    checksums: str | None = None  # what matched: `crc32:<b64>`, `md5:<hex>`


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
    ledger: Ledger | None  # None in a dry run, which downloads nothing


class LocalDiffers(Exception):
    """The object was fetched to be compared with a local file, and the bytes differ."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def download(
    t: Transfer, record: ObjectRecord, target: str, compare_with: tuple[str, ...] = ()
) -> Downloaded | Matched:
    """Fetch, verify and fsync the object in a temp file. Where `compare_with` names local files
    whose content could not be proven otherwise, their bytes are compared first: an equal one is
    the object (Matched; the temp file goes); a different one at `target` is a conflict
    (LocalDiffers). Otherwise the ledger records the file (staged) and only then it gets its
    real name."""
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
        verified = fetch(t.fetcher, record, fd)
        t.fs.fsync(fd)
        got = replace(record, version_id=verified.version_id or record.version_id)
        for path in compare_with:
            if t.fs.same_bytes(fd, path):
                return Matched(path, f"bytes ({verified.label})", verified.version_id)
        if target in compare_with:
            raise LocalDiffers(target)
        delivery_id = None
        if t.ledger is not None:
            new = NewDelivery(
                got, target, t.fs.file_id(fd), verified.checksums, verified.label, "downloaded"
            )
            delivery_id = t.ledger.stage(new)
        try:
            t.fs.link_into_place(temp, target)
        except FileExistsError:
            if t.ledger is not None and delivery_id is not None:
                t.ledger.discard(delivery_id)
            raise TargetExists(f"a file appeared at {target} during the download") from None
        # The folder is fsynced by the deleter, once per batch, before the row says "delivered".
        placed = True
    finally:
        if not placed:
            _remove_quietly(t.fs, temp)
        t.fs.close(fd)  # only now is the lock gone: no sweep ever takes a file being written
    return Downloaded(
        path=target,
        verified=verified.label,
        size=record.size,
        version_id=verified.version_id,
        delivery_id=delivery_id,
        checksums=verified.checksums,
    )


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
