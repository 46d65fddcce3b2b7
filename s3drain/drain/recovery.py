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
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import http_status
from s3drain.local.fs import LocalFS
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_rows import Delivery
from s3drain.records import FileId, Outcome, Status
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy

_GONE = (404, 405)  # 405: the key's current version is a delete marker

# A 412 for a delete in flight, in an unversioned bucket: this version is gone from the key,
# but whether by the killed run's delete or by the upload now there, S3 cannot say. Not
# "deleted" (the key is not empty), and said plainly; its bytes were delivered either way.
LEFT_S3 = (
    "left S3 while its delete was in flight (a run was stopped): the key now holds a newer "
    "upload, which stays; whether this version was deleted or overwritten first, S3 cannot "
    "tell; its bytes were delivered"
)
KEPT = (
    "overwritten while its delete was in flight (a run was stopped): this version was not "
    "deleted and stays in the bucket's history; the newer upload stays"
)


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


def _ask(client: S3Client, bucket: str, retry: RetryPolicy, delivery: Delivery) -> str | None:
    """`deleted`, `changed`, `there` (unchanged, never deleted), or None (no answer)."""
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": delivery.key,
        "IfMatch": f'"{delivery.etag}"',
    }
    try:
        answer = retry.run(f"HeadObject {delivery.key}", partial(client.head_object, **params))
    except ClientError as exc:
        status = http_status(exc)
        if status in _GONE:
            return "deleted"
        if status != 412:
            return None
    except BotoCoreError:
        return None
    else:
        # A server that ignores If-Match on HEAD answers for whatever is at the key.
        if str(answer.get("ETag") or "").strip('"') in ("", delivery.etag):
            return "there"
    if delivery.version_id is None:
        return "changed"
    # Another version is current: was ours deleted by its VersionId, or overwritten?
    try:
        retry.run(
            f"HeadObject {delivery.key} version {delivery.version_id}",
            partial(
                client.head_object,
                Bucket=bucket,
                Key=delivery.key,
                VersionId=delivery.version_id,
            ),
        )
    except ClientError as exc:
        return "deleted" if http_status(exc) in (*_GONE, 400) else None
    except BotoCoreError:
        return None
    else:
        return "changed"


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
            answer = _ask(client, bucket, retry, delivery)
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
                detail = LEFT_S3 if delivery.version_id is None else KEPT
            record(_outcome(delivery, deleted=deleted, detail=detail))
        audited.append(delivery.id)
    if can_record():
        ledger.mark_audited(audited)
    return Recovered(completed, dropped, settled, unanswered)
