"""Finish what a killed run left in the ledger, before this run takes any object.

- A `staged` row (killed between a download's row and its delete batch): the file is under its
  real name with the inode, size and mtime the row recorded → its folder is fsynced and the row
  becomes delivered; otherwise the row is dropped (the object is downloaded again).
- A delete in flight (`sending`): S3 is asked, with If-Match on the recorded ETag, whether that
  object is gone. 404: deleted. 412: the key holds another version now — in a versioned bucket
  the recorded version itself is asked for; otherwise it is `changed`, not deleted. Still there:
  the drain takes it as usual. No answer: the row stays for the next run.
- An outcome whose audit line was not written (killed between S3's answer and the line): the
  line is written now.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace

from s3drain.drain.delete_requests import kept, left_s3
from s3drain.local.fs import LocalFS
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_rows import Delivery
from s3drain.records import FileId, Outcome, Status
from s3drain.s3.client import S3Client
from s3drain.s3.object_state import object_state
from s3drain.s3.retry import RetryPolicy

STOPPED = "a run was stopped"


@dataclass(frozen=True)
class Recovered:
    completed: int = 0  # staged rows whose file was found under its real name
    dropped: int = 0  # staged rows whose file was not
    settled: int = 0  # deletes in flight that S3 answered for (lines written now)
    unanswered: int = 0  # deletes in flight S3 could not answer for: asked again next run

    def __str__(self) -> str:
        parts = [
            f"{count} {what}"
            for count, what in (
                (self.completed, "download(s) completed"),
                (self.dropped, "unfinished download(s) dropped"),
                (self.settled, "delete(s) an interrupted run had sent recorded"),
                (self.unanswered, "delete(s) still unconfirmed"),
            )
            if count
        ]
        return "; ".join(parts)


def _status(delivery: Delivery) -> Status:
    return {"processed": Status.PROCESSED, "downloaded": Status.DOWNLOADED}.get(
        delivery.how, Status.PRESENT
    )


def _outcome(delivery: Delivery, *, deleted: bool, detail: str) -> Outcome:
    return Outcome(
        record=delivery.record(),
        status=_status(delivery) if deleted else Status.CHANGED,
        detail=detail,
        local_path=delivery.path,
        deleted=deleted,
        verified=delivery.verified,
        delivery_id=delivery.id,
        checksums=delivery.checksums,
    )


def _still_there(delivery: Delivery) -> bool:
    try:
        info = os.lstat(delivery.path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and FileId.of(info) == delivery.file


def recover(
    ledger: Ledger,
    client: S3Client,
    bucket: str,
    retry: RetryPolicy,
    fs: LocalFS,
    *,
    record: Callable[[Outcome], None],
    can_record: Callable[[], bool],
) -> Recovered:
    completed = dropped = settled = unanswered = 0
    audited: list[int] = []
    for delivery in ledger.unfinished(bucket):
        if delivery.state == "staged":
            if _still_there(delivery):
                fs.fsync_dir(os.path.dirname(delivery.path))
                ledger.complete(delivery.id)
                completed += 1
            else:
                ledger.discard(delivery.id)
                dropped += 1
            continue
        if delivery.delete_state == "sending":
            answer = object_state(
                client,
                bucket,
                retry,
                key=delivery.key,
                etag=delivery.etag,
                version_id=delivery.version_id,
            )
            if answer is None:
                unanswered += 1
                continue
            if answer == "there":
                ledger.settle([(delivery.id, None)])
                audited.append(delivery.id)
                continue
            ledger.settle([(delivery.id, answer)])
            delivery = replace(delivery, delete_state=answer)  # noqa: PLW2901
            settled += 1
        if delivery.delete_state in ("deleted", "changed"):
            deleted = delivery.delete_state == "deleted"
            if deleted:
                detail = "delete confirmed after an interrupted run"
            else:
                # With a version id S3 could tell: that version is still in the bucket.
                detail = (left_s3 if delivery.version_id is None else kept)(STOPPED)
            record(_outcome(delivery, deleted=deleted, detail=detail))
        audited.append(delivery.id)
    if can_record():
        ledger.mark_audited(audited)
    return Recovered(completed, dropped, settled, unanswered)
