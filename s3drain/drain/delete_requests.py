"""The only place s3drain sends a delete, in the form the run's delete guard asks for.

Each delete names exactly the object that was verified, as far as the server allows:

    etag-batch    DeleteObjects, up to 1000 keys, each with the ETag that was verified
    if-match      DeleteObject + If-Match per object (servers that ignore the per-key ETag)
    version-id    the VersionId that was verified (a versioned bucket on a server that
                  honours no condition): removes that version for good
    head-checked  HEAD + If-Match right before an unconditional DeleteObject: narrows the race
                  with an overwrite to milliseconds, cannot close it
    none          no condition (--no-conditional-delete on an unversioned bucket)

An object is reported "deleted" only when S3 confirmed it; every per-key error leaves it in S3
and says why (412: `changed`, the newer version stays). A delete whose every attempt failed in a
way that may have reached S3 (a lost answer, a timeout, a 5xx) is settled by asking S3 whether
the object is still there (`s3/object_state.py`): a run that ends leaves no object gone from S3
without the line that says so, unless S3 stopped answering (then the next run asks).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import ConfigError, S3DrainError, describe, error_code, http_status
from s3drain.records import ObjectRecord, Outcome, Status
from s3drain.s3.client import S3Client
from s3drain.s3.object_state import object_state
from s3drain.s3.retry import RETRYABLE_CODES, RetryPolicy, is_retryable

MAX_BATCH = 1000  # the DeleteObjects limit
DELETE_STREAMS = 4  # DeleteObjects requests of one batch in flight at once
MIN_CHUNK = 250  # keys per request, at least, when a batch is split


class DeleteGuard(StrEnum):
    ETAG_BATCH = "etag-batch"
    IF_MATCH = "if-match"
    VERSION_ID = "version-id"
    HEAD_CHECKED = "head-checked"
    NONE = "none"

    @property
    def exact(self) -> bool:
        """Does the server itself refuse to delete anything but the verified object?"""
        return self in (DeleteGuard.ETAG_BATCH, DeleteGuard.IF_MATCH, DeleteGuard.VERSION_ID)

    @property
    def batched(self) -> bool:
        return self in (DeleteGuard.ETAG_BATCH, DeleteGuard.VERSION_ID, DeleteGuard.NONE)


def conditional_refused(exc: BaseException) -> bool:
    return http_status(exc) == 501 or error_code(exc) in ("NotImplemented", "NotSupported")


NOT_IMPLEMENTED_HINT = (
    "this S3 server rejects conditional deletes (If-Match / ETag): run with "
    "--no-conditional-delete to delete without the overwrite check"
)

# The characters XML 1.0 cannot carry: the complement of its Char production (tab, newline,
# carriage return, U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF). Spelled as what is left
# out: the complement's few short ranges compile in 0.5 ms, the production's own in 3.5.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def fits_xml(key: str) -> bool:
    """Can an XML 1.0 body (DeleteObjects) carry this key?"""
    return _NOT_XML.search(key) is None


_CHANGED = "overwritten in S3 after it was verified; the new version stays in S3"
CHECKS = 8  # HEADs side by side when a whole DeleteObjects went unanswered


def left_s3(why: str) -> str:
    """A version gone from an unversioned key that now holds a newer upload, after a delete of
    it went unanswered: whether the delete or the upload came first, S3 cannot say. Not
    "deleted" (the key is not empty), and said plainly; its bytes were delivered either way."""
    return (
        f"left S3 while its delete was in flight ({why}): the key now holds a newer upload, "
        "which stays; whether this version was deleted or overwritten first, S3 cannot tell; "
        "its bytes were delivered"
    )


def kept(why: str) -> str:
    return (
        f"overwritten while its delete was in flight ({why}): this version was not deleted and "
        "stays in the bucket's history; the newer upload stays"
    )


@dataclass(frozen=True)
class Sender:
    """What sending a batch of deletes needs. `fatal` ends the run (no further deletes) with
    an error the user can act on: a missing permission, a server that refuses the form."""

    client: S3Client
    bucket: str
    guard: DeleteGuard
    retry: RetryPolicy
    pool: Executor  # single deletes (and HEADs) run here, side by side
    fatal: Callable[[S3DrainError], None]
    # What sends DeleteObjects in place of `client.delete_objects`, with its parameters and
    # botocore's answer (the run's direct requests, `drain/direct_deletes.py`).
    delete_objects: Callable[..., Mapping[str, Any]] | None = None

    def send(self, batch: Sequence[Outcome]) -> list[Outcome]:
        stamped = [replace(o, delete_guard=self.guard.value) for o in batch]
        if self.guard is DeleteGuard.VERSION_ID:
            stamped = list(self.pool.map(self._with_version, stamped))
            ready = [o for o in stamped if o.record.version_id is not None]
            results = [o for o in stamped if o.record.version_id is None]
            return results + self._batch(ready)
        if self.guard.batched:
            return self._batch(stamped)
        return list(self.pool.map(self._one, stamped))

    # -- DeleteObjects -----------------------------------------------------------------------

    def _identifier(self, record: ObjectRecord) -> dict[str, str]:
        if self.guard is DeleteGuard.ETAG_BATCH:
            return {"Key": record.key, "ETag": record.quoted_etag}
        if self.guard is DeleteGuard.VERSION_ID and record.version_id is not None:
            return {"Key": record.key, "VersionId": record.version_id}
        return {"Key": record.key}

    def _batch(self, batch: Sequence[Outcome]) -> list[Outcome]:
        """A batch goes out as up to DELETE_STREAMS DeleteObjects side by side (of at least
        MIN_CHUNK keys each): a server works through one request's keys one after another
        (SeaweedFS: 1.3 s for 1000), and the last batch of a run is all that is left to wait
        for. Four requests per 1000 objects keep a drain within 1.01 requests per object."""
        parts = max(1, min(DELETE_STREAMS, len(batch) // MIN_CHUNK))
        if parts == 1:
            return self._batch_one(batch)
        chunks = [batch[n::parts] for n in range(parts)]
        return [o for answered in self.pool.map(self._batch_one, chunks) for o in answered]

    def _batch_one(self, batch: Sequence[Outcome]) -> list[Outcome]:
        # A key XML cannot carry (U+FFFE, U+FFFF) would make S3 reject the whole batch: it goes
        # alone, in a DeleteObject's URL.
        pending = {o.record.key: o for o in batch if fits_xml(o.record.key)}
        results = [self._one(o) for o in batch if not fits_xml(o.record.key)]
        for attempt in range(1, self.retry.max_attempts + 1):
            if not pending:
                return results
            objects = [self._identifier(o.record) for o in pending.values()]
            try:
                response = self.retry.run(
                    f"DeleteObjects ({len(objects)} keys)",
                    partial(
                        self.delete_objects or self.client.delete_objects,
                        Bucket=self.bucket,
                        Delete={"Objects": objects, "Quiet": False},  # type: ignore[typeddict-item]
                    ),
                )
            except (ClientError, BotoCoreError) as exc:
                self._request_failed(exc, "DeleteObjects")
                return results + self._unanswered(list(pending.values()), exc)
            confirmed = {d.get("Key") for d in response.get("Deleted", [])}
            errors = {e.get("Key"): e for e in response.get("Errors", [])}
            retry_later: dict[str, Outcome] = {}
            unconfirmed: list[Outcome] = []
            for key, outcome in pending.items():
                if key in confirmed:
                    results.append(self._deleted(outcome))
                elif key in errors:
                    verdict = self._per_key_error(outcome, errors[key], attempt)
                    if verdict is None:
                        retry_later[key] = outcome
                    else:
                        results.append(verdict)
                else:
                    unconfirmed.append(outcome)
            results += self._unanswered(unconfirmed, "S3 did not confirm the delete")
            if len(errors) == len(pending) and all(
                e.get("Code") == "AccessDenied" for e in errors.values()
            ):
                self.fatal(self._denied("DeleteObjects"))  # every key: a permission, not a key
            pending = retry_later
            if pending:
                self.retry.pause(min(self.retry.cap_seconds, self.retry.base_seconds * 2**attempt))
        # A per-key 5xx may have been carried out all the same.
        return results + self._unanswered(list(pending.values()), "delete kept failing")

    def _per_key_error(
        self, outcome: Outcome, error: Mapping[str, Any], attempt: int
    ) -> Outcome | None:
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "")
        if code in ("PreconditionFailed", "412"):
            return replace(outcome, status=Status.CHANGED, detail=_CHANGED, deleted=False)
        if code in ("NoSuchKey", "NoSuchVersion", "404"):
            return replace(outcome, deleted=True, detail="already gone from S3")
        if code in ("NotImplemented", "NotSupported"):
            self.fatal(ConfigError(NOT_IMPLEMENTED_HINT))
        if code in RETRYABLE_CODES and attempt < self.retry.max_attempts:
            return None
        return _failed(outcome, f"delete failed: {code}: {message}")

    # -- DeleteObject ------------------------------------------------------------------------

    def _one(self, outcome: Outcome) -> Outcome:
        record = outcome.record
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": record.key}
        if self.guard in (DeleteGuard.IF_MATCH, DeleteGuard.ETAG_BATCH):
            params["IfMatch"] = record.quoted_etag
        if self.guard is DeleteGuard.VERSION_ID and record.version_id is not None:
            params["VersionId"] = record.version_id
        try:
            if self.guard is DeleteGuard.HEAD_CHECKED and not _same_etag(
                self._head(record), record
            ):
                return replace(outcome, status=Status.CHANGED, detail=_CHANGED)
            self.retry.run(
                f"DeleteObject {record.key}", partial(self.client.delete_object, **params)
            )
        except ClientError as exc:
            status = http_status(exc)
            if status == 412 or error_code(exc) == "PreconditionFailed":
                return replace(outcome, status=Status.CHANGED, detail=_CHANGED)
            if status == 404 or error_code(exc) in ("NoSuchKey", "NoSuchVersion"):
                # After a lost response the first attempt may have done it; either way it is gone
                # and the local copy holds its bytes.
                return replace(outcome, deleted=True, detail="already gone from S3")
            self._request_failed(exc, "DeleteObject")
            return self._unanswered([outcome], exc)[0]
        except BotoCoreError as exc:
            return self._unanswered([outcome], exc)[0]
        return self._deleted(outcome)

    def _head(self, record: ObjectRecord) -> Mapping[str, Any]:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": record.key,
            "IfMatch": record.quoted_etag,
        }
        return self.retry.run(
            f"HeadObject {record.key}", partial(self.client.head_object, **params)
        )

    def _with_version(self, outcome: Outcome) -> Outcome:
        """version-id deletes need the version that was verified: a download knows it from
        its GET; an object found locally learns it here (with If-Match, so a newer version at
        the key is `changed`, not deleted)."""
        if outcome.record.version_id is not None:
            return outcome
        try:
            answer = self._head(outcome.record)
        except ClientError as exc:
            if http_status(exc) == 412:
                return replace(outcome, status=Status.CHANGED, detail=_CHANGED)
            if http_status(exc) == 404:
                return replace(outcome, deleted=True, detail="already gone from S3")
            return _failed_all([outcome], exc)[0]
        except BotoCoreError as exc:
            return _failed_all([outcome], exc)[0]
        if not _same_etag(answer, outcome.record):
            return replace(outcome, status=Status.CHANGED, detail=_CHANGED)
        version = answer.get("VersionId")
        if not version:
            return _failed(outcome, "the bucket is versioned but S3 named no version")
        return replace(outcome, record=replace(outcome.record, version_id=version))

    # -- deletes without an answer ---------------------------------------------------------------

    def _unanswered(
        self, outcomes: Sequence[Outcome], failure: BaseException | str
    ) -> list[Outcome]:
        """Deletes whose every attempt failed. One S3 refused (403, 400, ...) was not carried
        out. One that may have reached S3 (its answer lost, a timeout, a 5xx) is settled by
        asking S3 whether the object is still there; without an answer it stays unconfirmed,
        and the ledger keeps it in flight for the next run to ask."""
        if isinstance(failure, BaseException) and not is_retryable(failure):
            return _failed_all(outcomes, failure)
        why = failure if isinstance(failure, str) else describe(failure)
        if len(outcomes) <= 1:
            return [self._settle_unanswered(o, why) for o in outcomes]
        # Not self.pool: a whole batch may itself be running there, waiting on these.
        with ThreadPoolExecutor(CHECKS, thread_name_prefix="s3drain-check") as checks:
            return list(checks.map(partial(self._settle_unanswered, why=why), outcomes))

    def _settle_unanswered(self, outcome: Outcome, why: str) -> Outcome:
        record = outcome.record
        state = object_state(
            self.client,
            self.bucket,
            self.retry,
            key=record.key,
            etag=record.etag,
            version_id=record.version_id,
        )
        lost = f"its answer was lost: {why}"
        if state == "deleted":
            return replace(outcome, deleted=True, detail=f"deleted: S3 no longer holds it ({lost})")
        if state == "changed":
            detail = (left_s3 if record.version_id is None else kept)(lost)
            return replace(outcome, status=Status.CHANGED, detail=detail, deleted=False)
        if state == "there":
            return _failed(outcome, f"delete failed: {why}; the object is still in S3")
        return _failed(
            outcome,
            f"delete unconfirmed: {why}; S3 may have carried it out and did not say: the next "
            "run asks S3 and records its answer",
        )

    def _deleted(self, outcome: Outcome) -> Outcome:
        if self.guard is DeleteGuard.VERSION_ID:
            return replace(
                outcome,
                deleted=True,
                detail=f"version {outcome.record.version_id} removed for good",
            )
        return replace(outcome, deleted=True)

    # -- whole-request failures ----------------------------------------------------------------

    def _request_failed(self, exc: BaseException, operation: str) -> None:
        if conditional_refused(exc) and self.guard in (
            DeleteGuard.ETAG_BATCH,
            DeleteGuard.IF_MATCH,
        ):
            self.fatal(ConfigError(NOT_IMPLEMENTED_HINT))
        elif error_code(exc) == "AccessDenied":
            self.fatal(self._denied(operation))

    def _denied(self, operation: str) -> ConfigError:
        return ConfigError(
            f"S3 denied {operation} (AccessDenied) on s3://{self.bucket}: the credentials need "
            "s3:DeleteObject, or run with --no-delete"
        )


def _same_etag(head: Mapping[str, Any], record: ObjectRecord) -> bool:
    """Some servers ignore If-Match on HEAD too (fauxqs, the s3rver family): the ETag the
    answer names must be the verified one."""
    answered = str(head.get("ETag") or "").strip('"')
    return not answered or answered == record.etag


def _failed(outcome: Outcome, why: str) -> Outcome:
    return replace(outcome, status=Status.FAILED, detail=why, deleted=False)


def _failed_all(outcomes: Iterable[Outcome], exc: BaseException) -> list[Outcome]:
    why = f"delete failed: {describe(exc)}"
    return [_failed(o, why) for o in outcomes]
