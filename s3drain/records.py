"""The small frozen records that flow through a run: what the listing saw, what became of it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
# A LastModified nobody knows yet: an object named by an event (its GET or HEAD tells), or a
# file an s3drain without a ledger tagged.
UNKNOWN_TIME = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """One object as listed. Size and ETag come from the listing: no HEAD per key."""

    key: str
    size: int
    etag: str  # without the quotes S3 puts around it
    last_modified: datetime
    version_id: str | None = None  # the version a GET returned, in a versioned bucket
    storage_class: str | None = None

    @property
    def quoted_etag(self) -> str:
        return f'"{self.etag}"'

    @property
    def etag_is_md5(self) -> bool:
        """A single-part upload's ETag is the MD5 of the bytes (unless SSE-KMS or SSE-C, which
        only the GET response tells); a multipart ETag is `<hex>-<parts>`."""
        return _MD5_ETAG.match(self.etag) is not None

    @property
    def is_multipart(self) -> bool:
        return "-" in self.etag


class Status(StrEnum):
    """What happened to one object. The first three delete it from S3; the rest leave it."""

    DOWNLOADED = "downloaded"  # fetched, verified, made durable (then deleted)
    PROCESSED = "processed"  # already in the processed folder: deleted without download
    PRESENT = "present"  # already at its destination (an earlier run stopped before deleting)
    CONFLICT = "conflict"  # a different local file sits where it would go
    REFUSED = "refused"  # the key cannot become a safe local path
    CHANGED = "changed"  # overwritten or removed in S3 during the run
    FAILED = "failed"  # a step failed after its retries; the next run tries again
    SKIPPED = "skipped"  # a folder marker: nothing to download, nothing to delete

    @property
    def leaves_object(self) -> bool:
        return self in _LEFT_IN_S3


_LEFT_IN_S3 = frozenset({Status.CONFLICT, Status.REFUSED, Status.CHANGED, Status.FAILED})


@dataclass(frozen=True, slots=True)
class FileId:
    """Which local file holds the bytes: device and inode, with the size and mtime it had."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> FileId:
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class Outcome:
    record: ObjectRecord
    status: Status
    detail: str = ""  # the reason or the error, one line
    local_path: str | None = None
    deleted: bool = False  # True only when S3 confirmed the delete
    verified: str | None = None  # how the local copy was proven: crc32, md5, ledger, bytes, ...
    bytes_downloaded: int = 0
    # The ledger row that records the delivery (a download's staged row, or an earlier run's).
    delivery_id: int | None = None
    # A local file whose content proved the object (no ledger row yet): recorded at delete time.
    file: FileId | None = None
    checksums: str | None = None  # what was verified, `crc32:<base64>` or `md5:<hex>`
    delete_guard: str | None = None  # how the delete named exactly this object
