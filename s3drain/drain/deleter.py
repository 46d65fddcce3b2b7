"""The only place s3drain sends a delete.

Objects arrive here only once a verified, durable local copy exists (or a matching one already
did). They are removed in batches of up to 1000 with DeleteObjects, each key carrying the listed
ETag so an object overwritten since it was verified survives; `--delete-mode single` sends
DeleteObject + If-Match instead. In a versioned bucket the condition is checked against the
current version and the delete leaves a delete marker: the key leaves the prefix, its history
stays. Without conditions (`--no-conditional-delete`) a versioned bucket's deletes name the
VersionId that was downloaded instead, the one other way to be exact. An object is reported
"deleted" only when S3 confirmed it; every per-key error leaves it in S3 and says why.

Before a batch is sent its keys go to the delete journal (`journal.py`); after the outcomes are
in the audit log the journal is emptied.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.drain.journal import DeleteJournal
from s3drain.errors import (
    AbortError,
    ConfigError,
    DeleteGuardError,
    S3DrainError,
    describe,
    error_code,
    http_status,
)
from s3drain.records import ObjectRecord, Outcome, Status
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RETRYABLE_CODES, RetryPolicy

MAX_BATCH = 1000  # the DeleteObjects limit


@dataclass(frozen=True)
class DeletePolicy:
    bucket: str
    mode: str = "batch"  # or "single"
    conditional: bool = True
    batch_size: int = MAX_BATCH
    flush_seconds: float = 5.0
    single_workers: int = 16
    max_deletes: int | None = None  # a hard cap behind --max-delete
    versioned: bool = False


def conditional_refused(exc: BaseException) -> bool:
    return http_status(exc) == 501 or error_code(exc) in ("NotImplemented", "NotSupported")


NOT_IMPLEMENTED_HINT = (
    "this S3 server rejects conditional deletes (If-Match / ETag): run with "
    "--no-conditional-delete to delete without the overwrite check"
)


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def fits_xml(key: str) -> bool:
    """Can an XML 1.0 body (DeleteObjects) carry this key?"""
    return _NOT_XML.search(key) is None


def _split_by_xml(batch: Sequence[Outcome]) -> tuple[dict[str, Outcome], list[Outcome]]:
    """The batch by key, for DeleteObjects, and the outcomes whose key XML cannot carry."""
    fits: dict[str, Outcome] = {}
    alone: list[Outcome] = []
    for outcome in batch:
        if fits_xml(outcome.record.key):
            fits[outcome.record.key] = outcome
        else:
            alone.append(outcome)
    return fits, alone


_CLOSE = object()


class Deleter:
    """A thread that batches verified objects and deletes them; `submit` from any worker."""

    def __init__(
        self,
        client: S3Client,
        policy: DeletePolicy,
        *,
        retry: RetryPolicy,
        journal: DeleteJournal,
        make_durable: Callable[[Sequence[Outcome]], None],
        record: Callable[[Outcome], None],
        can_record: Callable[[], bool],
        room_to_record: Callable[[Sequence[Outcome]], bool],
        sync: Callable[[], None],
        fatal: Callable[[S3DrainError], None],
    ) -> None:
        self._client = client
        self._policy = policy
        self._retry = retry
        self._journal = journal
        self._make_durable = make_durable
        self._record = record
        self._can_record = can_record
        self._room_to_record = room_to_record
        self._sync = sync
        self._fatal = fatal
        self._queue: queue.Queue[object] = queue.Queue(maxsize=2 * policy.batch_size)
        self._deletes_sent = 0
        self._broken: S3DrainError | None = None
        self._pool = (
            ThreadPoolExecutor(policy.single_workers, thread_name_prefix="s3drain-delete")
            if policy.mode == "single"
            else None
        )
        self._thread = threading.Thread(target=self._loop, name="s3drain-deleter", daemon=True)
        self._thread.start()

    def submit(self, outcome: Outcome) -> None:
        self._queue.put(outcome)

    def close(self) -> None:
        self._queue.put(_CLOSE)
        self._thread.join()
        if self._pool is not None:
            self._pool.shutdown()

    def _loop(self) -> None:
        batch: list[Outcome] = []
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, Outcome):
                batch.append(item)
                if deadline is None:
                    deadline = time.monotonic() + self._policy.flush_seconds
            if batch and (item is None or item is _CLOSE or len(batch) >= self._policy.batch_size):
                self._flush(batch)
                batch, deadline = [], None
            if item is _CLOSE:
                return

    def _flush(self, batch: list[Outcome]) -> None:
        if self._broken is not None:
            self._leave(batch, f"not deleted: {self._broken.message}")
            return
        if not self._can_record() or not self._room_to_record(batch):
            # A delete whose audit line cannot be written is not sent.
            self._break(
                AbortError(
                    "no room to record deletes in the audit log (disk full or file-size limit): "
                    "free space and run again; objects not deleted stay in S3"
                )
            )
            self._leave(batch, "not deleted: the audit log cannot take its line")
            return
        allowed = batch
        cap = self._policy.max_deletes
        if cap is not None and self._deletes_sent + len(batch) > cap:
            # Objects appeared after the guard counted: the cap holds, and the run says so
            # with the guard's own exit code.
            allowed = batch[: max(0, cap - self._deletes_sent)]
            self._break(
                DeleteGuardError(
                    f"--max-delete {cap:,} reached during the run: objects that appeared after "
                    "the check were downloaded but not deleted",
                    hint="the next run deletes them if --max-delete allows",
                )
            )
            self._leave(batch[len(allowed) :], f"not deleted: --max-delete {cap} reached")
        if not allowed:
            return
        try:
            self._make_durable(allowed)
        except OSError as exc:
            self._leave(
                allowed, f"not deleted: the local copy could not be fsynced: {describe(exc)}"
            )
            return
        self._deletes_sent += len(allowed)
        try:
            self._journal.write(allowed)
        except OSError as exc:
            self._break(S3DrainError(f"cannot write the delete journal: {describe(exc)}"))
            self._leave(allowed, "not deleted: the delete journal could not be written")
            return
        if self._policy.mode == "single":
            results = self._delete_singly(allowed)
        else:
            results = self._delete_batch(allowed)
        for outcome in results:
            self._record(outcome)
        self._sync()
        if self._can_record():
            self._journal.clear()
        # Otherwise the journal stays: the next run asks S3 which of these keys are gone and
        # writes their audit lines then.

    def _leave(self, outcomes: Sequence[Outcome], why: str) -> None:
        for outcome in outcomes:
            self._record(replace(outcome, status=Status.FAILED, detail=why, deleted=False))
        self._sync()

    def _break(self, error: S3DrainError) -> None:
        if self._broken is None:
            self._broken = error
            self._fatal(error)

    # -- DeleteObjects ---------------------------------------------------------------------

    def _exactly(self, record: ObjectRecord) -> dict[str, str]:
        """What makes a delete name exactly the verified object (see the module docstring)."""
        if self._policy.conditional:
            return {"ETag": record.quoted_etag}
        if self._policy.versioned and record.version_id is not None:
            return {"VersionId": record.version_id}
        return {}

    def _identifier(self, record: ObjectRecord) -> dict[str, str]:
        return {"Key": record.key, **self._exactly(record)}

    def _delete_batch(self, batch: list[Outcome]) -> list[Outcome]:
        # A key XML cannot carry (U+FFFE, U+FFFF) would make S3 reject the whole batch: it goes
        # alone, in a DeleteObject's URL.
        pending, alone = _split_by_xml(batch)
        results = [self._delete_one(o) for o in alone]
        if not pending:
            return results
        for attempt in range(1, self._retry.max_attempts + 1):
            objects = [self._identifier(o.record) for o in pending.values()]
            try:
                response = self._retry.run(
                    f"DeleteObjects ({len(objects)} keys)",
                    partial(
                        self._client.delete_objects,
                        Bucket=self._policy.bucket,
                        Delete={"Objects": objects, "Quiet": False},  # type: ignore[typeddict-item]
                    ),
                )
            except (ClientError, BotoCoreError) as exc:
                self._request_failed(exc, "DeleteObjects")
                results += self._failed_all(pending.values(), exc)
                return results
            confirmed = {d.get("Key") for d in response.get("Deleted", [])}
            retry_later: dict[str, Outcome] = {}
            errors = {e.get("Key"): e for e in response.get("Errors", [])}
            for key, outcome in pending.items():
                if key in confirmed:
                    results.append(replace(outcome, deleted=True))
                elif key in errors:
                    verdict = self._per_key_error(outcome, errors[key], attempt)
                    if verdict is None:
                        retry_later[key] = outcome
                    else:
                        results.append(verdict)
                else:
                    results.append(
                        replace(
                            outcome, status=Status.FAILED, detail="S3 did not confirm the delete"
                        )
                    )
            if len(errors) == len(pending) and all(
                e.get("Code") == "AccessDenied" for e in errors.values()
            ):
                self._break(self._denied("DeleteObjects"))  # every key: a permission, not a key
            pending = retry_later
            if not pending:
                return results
            self._retry.pause(min(self._retry.cap_seconds, self._retry.base_seconds * 2**attempt))
        for outcome in pending.values():
            results.append(
                replace(outcome, status=Status.FAILED, detail="delete kept failing; left in S3")
            )
        return results

    def _per_key_error(
        self, outcome: Outcome, error: Mapping[str, Any], attempt: int
    ) -> Outcome | None:
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "")
        if code in ("PreconditionFailed", "412"):
            return replace(
                outcome,
                status=Status.CHANGED,
                detail="overwritten in S3 after it was verified; the new version stays in S3",
                deleted=False,
            )
        if code in ("NoSuchKey", "NoSuchVersion", "404"):
            return replace(outcome, deleted=True, detail="already gone from S3")
        if code in ("NotImplemented", "NotSupported"):
            self._break(ConfigError(NOT_IMPLEMENTED_HINT))
        if code in RETRYABLE_CODES and attempt < self._retry.max_attempts:
            return None
        return replace(outcome, status=Status.FAILED, detail=f"delete failed: {code}: {message}")

    def _failed_all(self, outcomes: Iterable[Outcome], exc: BaseException) -> list[Outcome]:
        why = f"delete failed: {describe(exc)}"
        return [replace(o, status=Status.FAILED, detail=why, deleted=False) for o in outcomes]

    def _request_failed(self, exc: BaseException, operation: str) -> None:
        if conditional_refused(exc) and self._policy.conditional:
            self._break(ConfigError(NOT_IMPLEMENTED_HINT))
        elif error_code(exc) == "AccessDenied":
            self._break(self._denied(operation))

    def _denied(self, operation: str) -> ConfigError:
        return ConfigError(
            f"S3 denied {operation} (AccessDenied) on s3://{self._policy.bucket}: the "
            "credentials need s3:DeleteObject, or run with --no-delete"
        )

    # -- DeleteObject + If-Match ---------------------------------------------------------------

    def _delete_singly(self, batch: list[Outcome]) -> list[Outcome]:
        assert self._pool is not None
        return list(self._pool.map(self._delete_one, batch))

    def _delete_one(self, outcome: Outcome) -> Outcome:
        record = outcome.record
        exactly = self._exactly(record)
        params: dict[str, Any] = {"Bucket": self._policy.bucket, "Key": record.key}
        if "ETag" in exactly:
            params["IfMatch"] = exactly["ETag"]
        if "VersionId" in exactly:
            params["VersionId"] = exactly["VersionId"]
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return self._client.delete_object(**params)

        try:
            self._retry.run(f"DeleteObject {record.key}", attempt)
        except ClientError as exc:
            status = http_status(exc)
            if status == 412 or error_code(exc) == "PreconditionFailed":
                return replace(
                    outcome,
                    status=Status.CHANGED,
                    detail="overwritten in S3 after it was verified; the new version stays in S3",
                )
            if status == 404 or error_code(exc) == "NoSuchKey":
                # After a lost response the first attempt may have done it; either way it is gone
                # and the local copy holds its bytes.
                return replace(outcome, deleted=True, detail="already gone from S3")
            self._request_failed(exc, "DeleteObject")
            return self._failed_all([outcome], exc)[0]
        except BotoCoreError as exc:
            return self._failed_all([outcome], exc)[0]
        return replace(outcome, deleted=True)
