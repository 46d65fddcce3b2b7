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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TextIO

from s3drain.drain.context import Context, RunState
from s3drain.drain.deleter import DeletePolicy, Deleter
from s3drain.drain.dispatch import dispatch
from s3drain.drain.journal import DeleteJournal, recover_journal
from s3drain.drain.reporter import Reporter
from s3drain.drain.select import guard_deletes, guard_error
from s3drain.drain.settings import DrainSettings
from s3drain.drain.summary import RunInfo, Totals
from s3drain.drain.transfer import (
    GetSlots,
    Transfer,
    sweep_temp_files,
)
from s3drain.errors import AbortError, ExitCode, S3DrainError, describe
from s3drain.local.audit import AuditLog
from s3drain.local.folders import prepare_local
from s3drain.local.fs import LocalFS
from s3drain.local.lock import run_lock
from s3drain.local.paths import Layout
from s3drain.records import Outcome, Status
from s3drain.s3.client import RequestCounter, S3Client, make_client
from s3drain.s3.preflight import bucket_is_versioned
from s3drain.s3.retry import RetryPolicy


@dataclass(frozen=True)
class DrainResult:
    exit_code: ExitCode
    totals: Totals
    info: RunInfo
    internal_error: str | None = None  # a traceback, when s3drain hit a bug
    started: bool = True  # False: stopped by a check before anything changed
    hint: str | None = None  # what to do about `info.error`


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
    state = RunState(stop=stop or threading.Event())
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


def _reporter(settings: DrainSettings, state: RunState, out: TextIO, err: TextIO) -> Reporter:
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
    state: RunState,
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
        guard_deletes(settings, client, layout, retry, reporter)

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
    ctx = Context(settings, layout, reporter, transfer, deleter, state)
    try:
        return dispatch(ctx, client, retry)
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


def _result(
    settings: DrainSettings,
    reporter: Reporter | None,
    state: RunState,
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
            state.fail(guard_error(would_delete, settings.max_delete))
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
