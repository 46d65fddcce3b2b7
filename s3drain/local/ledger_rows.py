"""What one ledger row is: the delivery to write (`NewDelivery`), the delivery read back
(`Delivery`), and which row is the delivery of which listed object (`Delivery.is_of`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from s3drain.records import UNKNOWN_TIME, FileId, ObjectRecord


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A row to write: the object as listed (with the version the GET returned) and its file."""

    record: ObjectRecord
    path: str  # absolute
    file: FileId | None
    checksums: str | None  # what was verified, `crc32:<b64>` or `md5:<hex>`
    verified: str | None  # the audit log's label
    how: str  # downloaded | present | processed | migrated


@dataclass(frozen=True, slots=True)
class Delivery:
    """A row as read back."""

    id: int
    bucket: str
    key: str
    etag: str
    version_id: str | None
    size: int
    last_modified: str
    checksums: str | None
    verified: str | None
    path: str  # absolute
    file: FileId | None
    run: str
    how: str
    state: str
    delivered_at: float | None
    delete_state: str | None
    settled_at: float | None
    audited: bool

    def is_of(self, record: ObjectRecord) -> bool:
        """Is this row the delivery of exactly this object? Same ETag and LastModified (a
        re-upload of the same bytes is a new object), and the same version where both know one."""
        if self.state != "delivered" or (self.etag, self.size) != (record.etag, record.size):
            return False
        # Unknown only for files an s3drain without a ledger tagged (legacy.py).
        if self.last_modified and self.last_modified != record.last_modified.isoformat():
            return False
        return record.version_id is None or self.version_id in (None, record.version_id)

    def record(self) -> ObjectRecord:
        return ObjectRecord(
            key=self.key,
            size=self.size,
            etag=self.etag,
            last_modified=(
                datetime.fromisoformat(self.last_modified) if self.last_modified else UNKNOWN_TIME
            ),
            version_id=self.version_id,
        )


COLUMNS = (
    "d.id, d.bucket, d.key, d.etag, d.version_id, d.size, d.last_modified, d.checksums, "
    "d.verified, d.path, d.device, d.inode, d.mtime_ns, r.run, d.how, d.state, d.delivered_at, "
    "d.delete_state, d.settled_at, d.audited, d.size"
)
# Built from constants only; every value goes in as a bound parameter.
SELECT = f"SELECT {COLUMNS} FROM deliveries d JOIN runs r ON r.id = d.run_id"  # noqa: S608


def delivery_from_row(row: Sequence[Any], base: Path) -> Delivery:
    path = str(row[9])
    return Delivery(
        id=row[0],
        bucket=row[1],
        key=row[2],
        etag=row[3],
        version_id=row[4],
        size=row[5],
        last_modified=row[6],
        checksums=row[7],
        verified=row[8],
        path=path if os.path.isabs(path) else str(base / path),
        file=FileId(row[10], row[11], row[20], row[12]) if row[10] is not None else None,
        run=row[13],
        how=row[14],
        state=row[15],
        delivered_at=row[16],
        delete_state=row[17],
        settled_at=row[18],
        audited=bool(row[19]),
    )


# `s3drain history --status`: what happened to a delivery.
STATUS_SQL = {
    "delivered": "d.state = 'delivered' AND d.delete_state IS NULL",
    "deleted": "d.delete_state = 'deleted'",
    "changed": "d.delete_state = 'changed'",
    "in-flight": "(d.state = 'staged' OR d.delete_state = 'sending')",
}
HISTORY_STATUSES = tuple(STATUS_SQL)
