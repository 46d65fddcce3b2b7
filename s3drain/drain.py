"""The pipeline of one run: list -> select -> decide -> download -> delete -> record.

A lister thread keeps a page or two ahead; the main thread selects keys (filters, shard, limits)
and hands each to a pool of `--workers` threads, at most 2 x workers in flight (a semaphore taken
before submit, released when the object is done), so memory does not grow with the prefix.
A worker looks at the local folders (one lstat each), decides, downloads when it must, and passes
verified objects to the deleter thread. Objects flow forward only: nothing looks back.

On a fatal error (disk full, delete permission missing) or Ctrl-C the main thread stops taking
new keys, in-flight objects finish or clean up, verified objects are still deleted, and the run
ends with its summary.
"""

from __future__ import annotations

import contextlib
import os
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TextIO

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.audit import AuditLog
from s3drain.client import RequestCounter, S3Client, make_client
from s3drain.config import DrainSettings
from s3drain.decide import Action, decide
from s3drain.deleter import DeleteJournal, DeletePolicy, Deleter, recover_journal
from s3drain.errors import AbortError, ConfigError, DeleteGuardError, ExitCode, S3DrainError
from s3drain.filters import skip_reason
from s3drain.listing import list_pages, prefetch
from s3drain.localfs import LocalFS, is_storage_full
from s3drain.lock import run_lock
from s3drain.paths import Layout, MappedPath, look, prefix_folder
from s3drain.preflight import bucket_is_versioned, explain, prepare_local
from s3drain.records import ObjectRecord, Outcome, Status
from s3drain.report import Reporter, RunInfo, Totals, plural
from s3drain.retry import RetryPolicy, TransientError, describe, error_code
from s3drain.transfer import (
    GetSlots,
    Interrupted,
    ObjectChanged,
    PathBlocked,
    TargetExists,
    TempBusy,
    Transfer,
    download,
    sweep_temp_files,
)


@dataclass(frozen=True)
class DrainResult:
    exit_code: ExitCode
    totals: Totals
    info: RunInfo
    internal_error: str | None = None  # a traceback, when s3drain hit a bug
    started: bool = True  # False: stopped by a check before anything changed
    hint: str | None = None  # what to do about `info.error`


@dataclass
class _RunState:
    """What the threads of one run share besides the settings: the first fatal error."""

    stop: threading.Event
    fatal: S3DrainError | None = None
    internal_error: str | None = None
    any_get_succeeded: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, error: S3DrainError) -> None:
        with self.lock:
            if self.fatal is None:
                self.fatal = error
        self.stop.set()


@dataclass(frozen=True)
class _Context:
    settings: DrainSettings
    layout: Layout
    reporter: Reporter
    transfer: Transfer
    deleter: Deleter | None
    state: _RunState


def run_drain(
    settings: DrainSettings,
    *,
    out: TextIO,
    err: TextIO,
    client: S3Client | None = None,
    fs: LocalFS | None = None,
    sleep: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
) -> DrainResult:
    """One whole run, always ending in a DrainResult. An error found before anything changed
    (bucket, credentials, local folders, the lock, --max-delete) comes back with
    `started=False`; later failures end the run with its summary and their exit code."""
    state = _RunState(stop=stop or threading.Event())
    counter = RequestCounter()
    if client is None:
        client = make_client(settings.s3, counter)
    else:
        client.meta.events.register("before-send.s3", counter.on_send)
    fs = fs or LocalFS()
    reporter: Reporter | None = None
    stopped_early: str | None = None
    try:
        # S3 first (bucket, credentials, endpoint): a wrong setting must not leave folders.
        preflight_retry = RetryPolicy(settings.s3.max_attempts, sleep=sleep, stop_event=state.stop)
        versioned, warning = bucket_is_versioned(
            client, settings.bucket, preflight_retry, settings.s3.endpoint_url
        )
        if not settings.dry_run:
            prepare_local([settings.state_dir, settings.raw_dir, settings.processed_dir])
        with (
            run_lock(settings.state_dir, settings.local_base_path)
            if not settings.dry_run
            else contextlib.nullcontext()
        ):
            reporter = _reporter(settings, state, out, err)
            try:
                if warning:
                    reporter.warn(warning)
                stopped_early = _run(
                    settings,
                    client=client,
                    fs=fs,
                    reporter=reporter,
                    state=state,
                    sleep=sleep,
                    versioned=versioned,
                )
            finally:
                reporter.close()
    except S3DrainError as exc:
        state.fail(exc)
        return _result(settings, reporter, state, counter, None, started=False, hint=exc.hint)
    return _result(settings, reporter, state, counter, stopped_early, started=True)


def _reporter(settings: DrainSettings, state: _RunState, out: TextIO, err: TextIO) -> Reporter:
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Reporter(
        audit=None if settings.dry_run else AuditLog(settings.audit_log, run_id, settings.bucket),
        verbosity=settings.verbosity,
        progress=settings.progress,
        dry_run=settings.dry_run,
        out=out,
        err=err,
        secrets=settings.s3.secrets(),
        on_audit_error=lambda exc: state.fail(
            AbortError(f"cannot write the audit log {settings.audit_log}: {describe(exc)}")
        ),
        dry_run_lines_to=err if settings.json_summary else out,
        expected_objects=settings.max_objects,
    )


def _run(
    settings: DrainSettings,
    *,
    client: S3Client,
    fs: LocalFS,
    reporter: Reporter,
    state: _RunState,
    sleep: Callable[[float], None] | None,
    versioned: bool,
) -> str | None:
    retry = RetryPolicy(
        max_attempts=settings.s3.max_attempts,
        sleep=sleep,
        on_retry=reporter.retrying,
        stop_event=state.stop,
    )
    if not settings.conditional_delete and not settings.dry_run and not settings.no_delete:
        reporter.warn(
            "--no-conditional-delete: deletes cannot check that the object is unchanged"
            + (
                "; in this versioned bucket they name the version downloaded and remove it for "
                "good, and an older version of the same key becomes current again"
                if versioned
                else ": one overwritten after it was verified is deleted without being downloaded"
            )
        )
    journal = DeleteJournal(str(settings.state_dir / "deletes-in-flight.jsonl"))
    if not settings.dry_run:
        swept = sweep_temp_files(str(settings.raw_dir), fs)
        if swept:
            reporter.info(f"removed {swept} temporary file(s) left by an interrupted run")
        recovered = recover_journal(
            journal,
            client,
            settings.bucket,
            retry,
            record=reporter.record,
            can_record=reporter.audit_healthy,
        )
        if recovered:
            reporter.info(f"recorded {recovered} delete(s) an interrupted run had sent")
    layout = Layout.create(
        str(settings.raw_dir),
        str(settings.processed_dir),
        settings.prefix,
        probe=not settings.dry_run,
    )
    if settings.max_delete is not None and not (settings.no_delete or settings.dry_run):
        _guard_deletes(settings, client, layout, retry, reporter)

    part_pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="s3drain-part")
    transfer = Transfer(
        client=client,
        bucket=settings.bucket,
        retry=retry,
        fs=fs,
        part_pool=part_pool,
        multipart_threshold=settings.multipart_threshold,
        part_size=settings.part_size,
        stop=state.stop,
        slots=GetSlots(settings.workers),
    )
    deleter = None
    if not (settings.dry_run or settings.no_delete):
        deleter = Deleter(
            client,
            DeletePolicy(
                bucket=settings.bucket,
                mode=settings.delete_mode,
                conditional=settings.conditional_delete,
                batch_size=settings.delete_batch_size,
                flush_seconds=settings.delete_flush_seconds,
                single_workers=settings.workers,
                max_deletes=settings.max_delete,
                versioned=versioned,
            ),
            # Verified objects are deleted even while the run halts: no early stop on their retries.
            retry=replace(retry, stop_event=None),
            journal=journal,
            make_durable=lambda batch: _make_durable(fs, batch),
            record=reporter.record_pending,
            can_record=reporter.audit_healthy,
            room_to_record=reporter.room_to_record,
            sync=reporter.sync,
            fatal=state.fail,
        )
    ctx = _Context(settings, layout, reporter, transfer, deleter, state)
    try:
        return _dispatch(ctx, client, retry)
    finally:
        if deleter is not None:
            deleter.close()
        part_pool.shutdown()


def _make_durable(fs: LocalFS, batch: Sequence[Outcome]) -> None:
    """Everything a batch's deletes rely on is on disk before they are sent."""
    paths = [o.local_path for o in batch if o.local_path is not None]
    written_here = {o.local_path for o in batch if o.status is Status.DOWNLOADED}
    fs.sync_for_delete(
        files=[p for p in paths if p not in written_here],
        folders=sorted({os.path.dirname(p) for p in paths}),
    )


def _selected(
    settings: DrainSettings,
    record: ObjectRecord,
    folder: str,
    now: datetime,
    matched: set[int] | None = None,
) -> str | None:
    age = (now - record.last_modified).total_seconds()
    return skip_reason(
        record.key,
        record.key[len(folder) :],
        age,
        rules=settings.rules,
        min_age=settings.min_age,
        shard=settings.shard,
        matched=matched,
    )


def _warn_unused_rules(settings: DrainSettings, matched: set[int], reporter: Reporter) -> None:
    for index, rule in enumerate(settings.rules):
        if index not in matched:
            kind = "--include" if rule.include else "--exclude"
            reporter.warn(
                f"{kind} {rule.pattern!r} matched no key: patterns match the path below the "
                "prefix's folder ('*' stays in one folder, 'dir/**' takes a whole folder)"
            )


def _dispatch(ctx: _Context, client: S3Client, retry: RetryPolicy) -> str | None:
    settings, reporter, state = ctx.settings, ctx.reporter, ctx.state
    folder = prefix_folder(settings.prefix)
    now = datetime.now(UTC)
    in_flight = threading.BoundedSemaphore(2 * settings.workers)
    taken = taken_bytes = pages_seen = 0
    stopped_early: str | None = None
    matched: set[int] = set()
    pages = prefetch(list_pages(client, settings.bucket, settings.prefix, retry), state.stop)
    with ThreadPoolExecutor(settings.workers, thread_name_prefix="s3drain-worker") as pool:
        try:
            for page in pages:
                pages_seen += 1
                reporter.listed(len(page))
                for record in page:
                    why = _selected(settings, record, folder, now, matched)
                    if why is not None:
                        reporter.filtered(record, why)
                        continue
                    stopped_early = _limit_reached(settings, taken, taken_bytes, record)
                    if stopped_early or not _acquire(in_flight, state.stop):
                        break
                    taken += 1
                    taken_bytes += record.size
                    future = pool.submit(_handle, ctx, record)
                    future.add_done_callback(lambda _: in_flight.release())
                if stopped_early or state.stop.is_set():
                    break
            else:
                reporter.listing_finished()
                _warn_unused_rules(settings, matched, reporter)
        except (ClientError, BotoCoreError) as exc:
            operation = "ListObjectsV2"
            if pages_seen == 0:
                state.fail(
                    explain(
                        exc,
                        bucket=settings.bucket,
                        operation=operation,
                        endpoint=settings.s3.endpoint_url,
                    )
                )
            else:
                state.fail(
                    AbortError(
                        f"listing failed after {pages_seen} pages: {describe(exc)}; objects not "
                        "yet listed stay in S3 for the next run"
                    )
                )
    return stopped_early


def _acquire(semaphore: threading.BoundedSemaphore, stop: threading.Event) -> bool:
    while not semaphore.acquire(timeout=0.2):
        if stop.is_set():
            return False
    if stop.is_set():
        semaphore.release()
        return False
    return True


def _limit_reached(
    settings: DrainSettings, taken: int, taken_bytes: int, record: ObjectRecord
) -> str | None:
    if settings.max_objects is not None and taken >= settings.max_objects:
        return f"--max-objects {settings.max_objects:,} reached"
    if settings.max_bytes is not None and taken and taken_bytes + record.size > settings.max_bytes:
        return f"--max-bytes {settings.max_bytes:,} reached"
    return None


def _handle(ctx: _Context, record: ObjectRecord) -> None:
    if ctx.state.stop.is_set():
        return  # never started: it stays in S3 for the next run
    try:
        _process(ctx, record)
    except Exception as exc:
        # A bug, not a condition we know: the object stays in S3 and the run stops, loudly.
        ctx.reporter.record(Outcome(record, Status.FAILED, detail=f"internal error: {exc!r}"))
        ctx.state.internal_error = traceback.format_exc()
        ctx.state.fail(AbortError(f"internal error while handling {record.key!r}: {exc!r}"))


def _process(ctx: _Context, record: ObjectRecord) -> None:
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


def _download(ctx: _Context, record: ObjectRecord, target: str) -> Outcome:
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


def _finish(ctx: _Context, outcome: Outcome) -> None:
    if ctx.deleter is None:  # dry run or --no-delete: the object stays in S3
        ctx.reporter.record(outcome)
    else:
        ctx.reporter.pending(outcome)
        ctx.deleter.submit(outcome)


def _guard_deletes(
    settings: DrainSettings,
    client: S3Client,
    layout: Layout,
    retry: RetryPolicy,
    reporter: Reporter,
) -> None:
    """--max-delete: count what this run would delete before it touches anything."""
    folder = prefix_folder(settings.prefix)
    now = datetime.now(UTC)
    would_delete = taken = taken_bytes = listed = 0
    try:
        for page in list_pages(client, settings.bucket, settings.prefix, retry):
            listed += len(page)
            for record in page:
                if _selected(settings, record, folder, now) is not None:
                    continue
                if _limit_reached(settings, taken, taken_bytes, record):
                    break
                taken += 1
                taken_bytes += record.size
                mapped = layout.map_key(record.key, record.size)
                raw = processed = None
                if isinstance(mapped, MappedPath):
                    processed = look(mapped.processed, expect_size=record.size, want_md5=False)
                    raw = look(mapped.raw, expect_size=record.size, want_md5=False)
                action = decide(record, mapped, raw, processed, "size").action
                if action in (Action.PROCESSED, Action.PRESENT, Action.DOWNLOAD):
                    would_delete += 1
    except (ClientError, BotoCoreError) as exc:
        raise explain(
            exc,
            bucket=settings.bucket,
            operation="ListObjectsV2",
            endpoint=settings.s3.endpoint_url,
        ) from None
    assert settings.max_delete is not None
    if would_delete > settings.max_delete:
        reporter.listed(listed)  # what the guard saw is what the summary reports
        raise _guard_error(would_delete, settings.max_delete)


def _guard_error(would_delete: int, max_delete: int) -> DeleteGuardError:
    return DeleteGuardError(
        f"this run would delete {plural(would_delete, 'object')}, more than --max-delete "
        f"{max_delete:,}; nothing was downloaded or deleted",
        hint="check --prefix, or raise --max-delete if that many is right",
    )


def _result(
    settings: DrainSettings,
    reporter: Reporter | None,
    state: _RunState,
    counter: RequestCounter,
    stopped_early: str | None,
    *,
    started: bool,
    hint: str | None = None,
) -> DrainResult:
    totals = reporter.totals() if reporter is not None else Totals.empty()
    if settings.dry_run and settings.max_delete is not None and not settings.no_delete:
        would_delete = sum(
            totals.counts.get(s.value, 0)
            for s in (Status.DOWNLOADED, Status.PROCESSED, Status.PRESENT)
        )
        if would_delete > settings.max_delete:
            state.fail(_guard_error(would_delete, settings.max_delete))
    if state.fatal is not None:
        code = state.fatal.exit_code
        error: str | None = state.fatal.message
    elif state.stop.is_set():
        code, error = ExitCode.INTERRUPTED, "interrupted: objects not yet handled stay in S3"
    else:
        code = ExitCode.PARTIAL if totals.left_in_s3 else ExitCode.OK
        error = None
    info = RunInfo(
        command="drain",
        source=f"s3://{settings.bucket}/{settings.prefix}",
        bucket=settings.bucket,
        prefix=settings.prefix,
        destination=str(settings.raw_dir),
        audit_log=str(settings.audit_log) if reporter and reporter.audited else None,
        dry_run=settings.dry_run,
        no_delete=settings.no_delete,
        exit_code=code,
        error=error,
        requests=counter.snapshot(),
        stopped_early=stopped_early,
        shard=str(settings.shard) if settings.shard else None,
    )
    return DrainResult(
        exit_code=code,
        totals=totals,
        info=info,
        internal_error=state.internal_error,
        started=started,
        hint=hint if hint is not None else (state.fatal.hint if state.fatal else None),
    )
