"""One object in a worker thread: map its key, look at the local folders, decide, download when
it must, and hand verified objects to the deleter. Every outcome is recorded exactly once."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.drain.context import Context
from s3drain.drain.decide import Action, Decision, decide
from s3drain.drain.direct_fetch import PathBlocked, TempBusy
from s3drain.drain.linker import Fetched
from s3drain.drain.proof import Content, Proof, prove
from s3drain.drain.select import delivered as delivered_of
from s3drain.drain.transfer import LocalDiffers, download
from s3drain.drain.verify import Interrupted, ObjectChanged, check_etag, last_modified
from s3drain.errors import (
    AbortError,
    ConfigError,
    TransientError,
    describe,
    error_code,
    http_status,
)
from s3drain.local.fs import is_storage_full
from s3drain.local.ledger_rows import Delivery
from s3drain.local.paths import Kind, LocalFile, MappedPath, look
from s3drain.records import UNKNOWN_TIME, ObjectRecord, Outcome, Status


def handle(
    ctx: Context,
    record: ObjectRecord,
    delivered: Delivery | None = None,
    rows: Sequence[Delivery] = (),
) -> None:
    """`rows`: the ledger's rows for the key, for an object no listing dated (`_dated`)."""
    if ctx.state.stop.is_set():
        return  # never started: it stays in S3 for the next run
    try:
        _process(ctx, record, delivered, rows)
    except Exception as exc:
        # A bug, not a condition we know: the object stays in S3 and the run stops, loudly.
        ctx.state.crashed(exc, f"the worker handling {record.key!r}")
        with contextlib.suppress(Exception):
            ctx.reporter.record(Outcome(record, Status.FAILED, detail=f"internal error: {exc!r}"))


class _Head:
    """HeadObject for this very object (If-Match on the listed ETag, checksums asked for), sent
    at most once and only when a decision needs it."""

    def __init__(self, ctx: Context, record: ObjectRecord) -> None:
        self._ctx = ctx
        self._record = record
        self.answer: Mapping[str, Any] | None = None

    def __call__(self) -> Mapping[str, Any]:
        if self.answer is None:
            record = self._record
            try:
                self.answer = self._ctx.retry.run(
                    f"HeadObject {record.key}",
                    partial(
                        self._ctx.client.head_object,
                        Bucket=self._ctx.settings.bucket,
                        Key=record.key,
                        IfMatch=record.quoted_etag,
                        ChecksumMode="ENABLED",
                    ),
                )
            except ClientError as exc:
                if http_status(exc) == 412:
                    raise ObjectChanged("overwritten in S3 after it was listed") from None
                if http_status(exc) == 404:
                    raise ObjectChanged("removed from S3 after it was listed") from None
                raise
            check_etag(record, self.answer)  # for servers that ignore If-Match on HEAD
        return self.answer

    def version(self) -> str | None:
        return (
            str(self.answer["VersionId"]) if self.answer and self.answer.get("VersionId") else None
        )


def _gather(
    ctx: Context,
    record: ObjectRecord,
    delivered: Delivery | None,
    *,
    raw: LocalFile,
    processed: LocalFile,
    head: _Head,
) -> tuple[Delivery | None, Proof | None, Proof | None]:
    """The facts `decide` needs: the ledger's row (for a versioned bucket, only when the
    current version is the one delivered), else proofs from content."""
    if delivered is not None and ctx.versioned and delivered.version_id is not None:
        head()
        if head.version() not in (None, delivered.version_id):
            delivered = None
    if delivered is not None:
        return delivered, None, None
    processed_proof = raw_proof = None
    if processed.kind is Kind.FILE:
        processed_proof = prove(record, processed, head)
    if raw.kind is Kind.FILE and (
        processed_proof is None or processed_proof.content is not Content.SAME
    ):
        raw_proof = prove(record, raw, head)
    return None, raw_proof, processed_proof


def _dated(
    record: ObjectRecord, rows: Sequence[Delivery], head: _Head
) -> tuple[ObjectRecord, Delivery | None]:
    """An object an event named comes without its LastModified, which tells a delivery of
    these bytes from a new upload of the same bytes. Where anything here could decide it
    without a GET (a ledger row, a local file), a HEAD dates it first, as a listing would
    have; the row that is this exact object's delivery is then found as for a listed one."""
    answer = head()
    record = replace(
        record,
        last_modified=last_modified(answer) or UNKNOWN_TIME,
        version_id=head.version() or record.version_id,
    )
    return record, delivered_of(record, list(rows))


def _process(
    ctx: Context, record: ObjectRecord, delivered: Delivery | None, rows: Sequence[Delivery]
) -> None:
    layout, record_outcome = ctx.layout, ctx.reporter.record
    mapped = layout.map_key(record.key, record.size)
    if not isinstance(mapped, MappedPath):
        decision = decide(record, mapped, None, None)
        status = Status.REFUSED if decision.action is Action.REFUSED else Status.SKIPPED
        record_outcome(Outcome(record, status, decision.reason))
        return
    processed = look(mapped.processed, case_insensitive=layout.case_insensitive)
    raw = look(mapped.raw, case_insensitive=layout.case_insensitive)
    head = _Head(ctx, record)
    try:
        undated = record.last_modified == UNKNOWN_TIME
        if undated and (rows or Kind.FILE in (raw.kind, processed.kind)):
            record, delivered = _dated(record, rows, head)
        delivered, raw_proof, processed_proof = _gather(
            ctx, record, delivered, raw=raw, processed=processed, head=head
        )
    except ObjectChanged as exc:
        record_outcome(Outcome(record, Status.CHANGED, f"{exc}; the current version stays"))
        return
    except (ClientError, BotoCoreError) as exc:
        record_outcome(Outcome(record, Status.FAILED, describe(exc)))
        return
    except OSError as exc:
        record_outcome(Outcome(record, Status.FAILED, f"local error: {describe(exc)}"))
        return
    decision = decide(
        record,
        mapped,
        raw,
        processed,
        delivered=delivered,
        raw_proof=raw_proof,
        processed_proof=processed_proof,
    )
    if head.version() is not None:
        record = replace(record, version_id=head.version())
    _act(ctx, record, decision, delivered=delivered, raw=raw, processed=processed)


def _act(
    ctx: Context,
    record: ObjectRecord,
    decision: Decision,
    *,
    delivered: Delivery | None,
    raw: LocalFile,
    processed: LocalFile,
) -> None:
    record_outcome = ctx.reporter.record
    if decision.action is Action.REFUSED:
        record_outcome(Outcome(record, Status.REFUSED, decision.reason))
    elif decision.action is Action.CONFLICT:
        record_outcome(Outcome(record, Status.CONFLICT, decision.reason, local_path=raw.path))
    elif decision.action in (Action.PROCESSED, Action.PRESENT):
        finish(ctx, _found_locally(record, decision, delivered, raw=raw, processed=processed))
    elif ctx.settings.dry_run:
        then = ", ".join(decision.compare_with)
        why = f"then compared with {then}" if then else ""
        record_outcome(Outcome(record, Status.DOWNLOADED, why, local_path=raw.path))
    else:
        outcome = _download(ctx, record, decision.compare_with, raw=raw, processed=processed)
        if isinstance(outcome, Fetched):
            assert ctx.linker is not None  # not a dry run: it downloaded
            ctx.linker.submit(outcome)
        elif outcome.status in (Status.PRESENT, Status.PROCESSED):
            finish(ctx, outcome)
        else:
            record_outcome(outcome)


def _found_locally(
    record: ObjectRecord,
    decision: Decision,
    delivered: Delivery | None,
    *,
    raw: LocalFile,
    processed: LocalFile,
) -> Outcome:
    """`processed` or `present`: from the ledger's row, or from a file whose content proved it
    (recorded in the ledger when its delete is sent)."""
    status = Status(decision.action.value)
    if delivered is not None:
        return Outcome(
            replace(record, version_id=record.version_id or delivered.version_id),
            status,
            decision.reason,
            local_path=raw.path if status is Status.PRESENT else delivered.path,
            verified=decision.matched_by,
            delivery_id=delivered.id,
            checksums=delivered.checksums,
        )
    local = processed if status is Status.PROCESSED else raw
    return Outcome(
        record,
        status,
        decision.reason,
        local_path=local.path,
        verified=decision.matched_by,
        file=local.file,
        checksums=decision.checksums,
    )


def _download(
    ctx: Context,
    record: ObjectRecord,
    compare_with: tuple[str, ...],
    *,
    raw: LocalFile,
    processed: LocalFile,
) -> Outcome | Fetched:
    state, target = ctx.state, raw.path
    try:
        done = download(ctx.transfer, record, target, compare_with)
    except LocalDiffers as exc:
        return Outcome(
            record,
            Status.CONFLICT,
            f"a different file is at {exc.path}: the bytes differ",
            local_path=exc.path,
        )
    except PathBlocked as exc:
        return Outcome(record, Status.REFUSED, str(exc))
    except ObjectChanged as exc:
        return Outcome(record, Status.CHANGED, f"{exc}; the current version stays in S3")
    except Interrupted:
        return Outcome(record, Status.FAILED, "interrupted before it finished; left in S3")
    except TempBusy as exc:
        return Outcome(record, Status.FAILED, f"{exc}; left in S3", local_path=target)
    except (ClientError, BotoCoreError, TransientError) as exc:
        # Before OSError: botocore's connection and timeout errors are OSErrors too.
        if error_code(exc) == "AccessDenied" and not state.any_get_succeeded:
            state.fail(
                ConfigError(
                    f"S3 denied GetObject on s3://{ctx.settings.bucket}/{record.key} "
                    "(AccessDenied): the credentials need s3:GetObject on the prefix"
                )
            )
        return Outcome(record, Status.FAILED, describe(exc))
    except OSError as exc:
        if is_storage_full(exc):
            state.fail(
                AbortError(
                    f"the disk is full or read-only ({describe(exc)}): free space and run again; "
                    "objects not yet downloaded stay in S3"
                )
            )
        return Outcome(record, Status.FAILED, f"local error: {describe(exc)}")
    state.any_get_succeeded = True
    if isinstance(done, Fetched):
        return done  # the linker gives it its name, then it goes on to the deleter
    local = processed if done.path == processed.path else raw
    return Outcome(
        replace(record, version_id=done.version_id or record.version_id),
        Status.PROCESSED if local is processed else Status.PRESENT,
        f"{done.path} holds its bytes (compared after a download)",
        local_path=done.path,
        verified=done.verified,
        file=local.file,
    )


def finish(ctx: Context, outcome: Outcome) -> None:
    if ctx.deleter is None:  # dry run: nothing is recorded, nothing deleted
        ctx.reporter.record(outcome)
    else:
        ctx.reporter.pending(outcome)
        ctx.deleter.submit(outcome)
