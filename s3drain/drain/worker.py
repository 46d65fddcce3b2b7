"""One object in a worker thread: map its key, look at the local folders, decide, download when
it must, and hand verified objects to the deleter. Every outcome is recorded exactly once."""

from __future__ import annotations

import traceback
from dataclasses import replace

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.drain.context import Context
from s3drain.drain.decide import Action, decide
from s3drain.drain.transfer import (
    Interrupted,
    ObjectChanged,
    PathBlocked,
    TargetExists,
    TempBusy,
    download,
)
from s3drain.errors import AbortError, ConfigError, TransientError, describe, error_code
from s3drain.local.fs import is_storage_full
from s3drain.local.paths import MappedPath, look
from s3drain.records import ObjectRecord, Outcome, Status


def handle(ctx: Context, record: ObjectRecord) -> None:
    if ctx.state.stop.is_set():
        return  # never started: it stays in S3 for the next run
    try:
        _process(ctx, record)
    except Exception as exc:
        # A bug, not a condition we know: the object stays in S3 and the run stops, loudly.
        ctx.reporter.record(Outcome(record, Status.FAILED, detail=f"internal error: {exc!r}"))
        ctx.state.internal_error = traceback.format_exc()
        ctx.state.fail(AbortError(f"internal error while handling {record.key!r}: {exc!r}"))


def _process(ctx: Context, record: ObjectRecord) -> None:
    settings, layout, record_outcome = ctx.settings, ctx.layout, ctx.reporter.record
    mapped = layout.map_key(record.key, record.size)
    raw = processed = None
    if isinstance(mapped, MappedPath):
        want_md5 = settings.match == "checksum" and record.etag_is_md5
        common = {
            "expect_size": record.size,
            "want_md5": want_md5,
            "case_insensitive": layout.case_insensitive,
        }
        processed = look(mapped.processed, **common)  # type: ignore[arg-type]
        raw = look(mapped.raw, **common)  # type: ignore[arg-type]
    decision = decide(record, mapped, raw, processed, settings.match)
    raw_path = mapped.raw if isinstance(mapped, MappedPath) else None

    if decision.action is Action.REFUSED:
        record_outcome(Outcome(record, Status.REFUSED, decision.reason))
    elif decision.action is Action.SKIPPED:
        record_outcome(Outcome(record, Status.SKIPPED, decision.reason))
    elif decision.action is Action.CONFLICT:
        record_outcome(Outcome(record, Status.CONFLICT, decision.reason, local_path=raw_path))
    elif decision.action is Action.PROCESSED:
        assert processed is not None
        _finish(
            ctx,
            Outcome(
                record,
                Status.PROCESSED,
                decision.reason,
                local_path=processed.path,
                verified=decision.matched_by,
            ),
        )
    elif decision.action is Action.PRESENT:
        _finish(
            ctx,
            Outcome(
                record,
                Status.PRESENT,
                decision.reason,
                local_path=raw_path,
                verified=decision.matched_by,
            ),
        )
    elif settings.dry_run:
        record_outcome(Outcome(record, Status.DOWNLOADED, local_path=raw_path))
    else:
        assert raw_path is not None
        outcome = _download(ctx, record, raw_path)
        if outcome.status is Status.DOWNLOADED:
            _finish(ctx, outcome)
        else:
            record_outcome(outcome)


def _download(ctx: Context, record: ObjectRecord, target: str) -> Outcome:
    state = ctx.state
    try:
        done = download(ctx.transfer, record, target)
    except PathBlocked as exc:
        return Outcome(record, Status.REFUSED, str(exc))
    except TargetExists as exc:
        return Outcome(record, Status.CONFLICT, str(exc), local_path=target)
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
    return Outcome(
        replace(record, version_id=done.version_id),
        Status.DOWNLOADED,
        local_path=done.path,
        verified=done.verified,
        bytes_downloaded=done.size,
    )


def _finish(ctx: Context, outcome: Outcome) -> None:
    if ctx.deleter is None:  # dry run or --no-delete: the object stays in S3
        ctx.reporter.record(outcome)
    else:
        ctx.reporter.pending(outcome)
        ctx.deleter.submit(outcome)
