"""The delete journal: keys whose delete may have been sent but whose outcome is not yet in the
audit log. Written (fsynced) before a batch is sent, emptied once the outcomes are recorded. A run
killed in between leaves it, and the next run asks S3 which of those keys are gone and writes
their audit lines (`recover_journal`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import http_status
from s3drain.records import ObjectRecord, Outcome, Status
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy


class DeleteJournal:
    """Keys whose delete may have been sent but whose outcome is not yet in the audit log."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, outcomes: Sequence[Outcome]) -> None:
        self.keep([_journal_entry(o) for o in outcomes])

    def keep(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Replace the journal with these entries (fsynced); none empties it."""
        lines = [json.dumps(entry, ensure_ascii=True) + "\n" for entry in entries]
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            data = "".join(lines).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.path, 0)

    def pending(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, encoding="ascii") as handle:
                return [json.loads(line) for line in handle if line.strip()]
        except FileNotFoundError:
            return []
        except (ValueError, UnicodeDecodeError):
            return []  # a torn last write: those deletes were never sent


def _journal_entry(outcome: Outcome) -> dict[str, Any]:
    r = outcome.record
    return {
        "key": r.key,
        "size": r.size,
        "etag": r.etag,
        "version_id": r.version_id,
        "last_modified": r.last_modified.isoformat(),
        "status": outcome.status.value,
        "local_path": outcome.local_path,
        "verified": outcome.verified,
        "bytes": outcome.bytes_downloaded,
    }


def recover_journal(
    journal: DeleteJournal,
    client: S3Client,
    bucket: str,
    retry: RetryPolicy,
    *,
    record: Callable[[Outcome], None],
    can_record: Callable[[], bool],
) -> int:
    """Finish the bookkeeping of a run killed mid-delete: audit every journaled object S3 no
    longer has. Asked with If-Match on the journaled ETag, so a newer upload at the same key
    (412) does not hide that ours is gone. Objects still there are left to this run's normal
    course; entries S3 could not answer for stay in the journal. Returns the number recovered."""
    recovered = 0
    unanswered: list[dict[str, Any]] = []
    for entry in journal.pending():
        params = {"Bucket": bucket, "Key": entry["key"], "IfMatch": f'"{entry["etag"]}"'}
        try:
            retry.run(f"HeadObject {entry['key']}", partial(client.head_object, **params))
            continue  # still there, unchanged: never deleted; the drain takes it as usual
        except ClientError as exc:
            if http_status(exc) not in (404, 405, 412):
                unanswered.append(entry)
                continue
        except BotoCoreError:
            unanswered.append(entry)
            continue
        record(_recovered_outcome(entry))
        recovered += 1
    if can_record():
        journal.keep(unanswered)
    return recovered


def _recovered_outcome(entry: Mapping[str, Any]) -> Outcome:
    rec = ObjectRecord(
        key=entry["key"],
        size=int(entry["size"]),
        etag=entry["etag"],
        last_modified=datetime.fromisoformat(entry["last_modified"]),
        version_id=entry.get("version_id"),
    )
    return Outcome(
        record=rec,
        status=Status(entry["status"]),
        detail="delete confirmed after an interrupted run",
        local_path=entry.get("local_path"),
        deleted=True,
        verified=entry.get("verified"),
        bytes_downloaded=int(entry.get("bytes") or 0),
    )
