"""One drain run, from the first check to the result: list -> select -> decide -> download ->
delete -> record.

Checks that change nothing come first (the bucket, credentials and endpoint; then the local
folders, the lock and the ledger); a failure there ends the run with `started=False` and one
line. Then `pipeline.py` runs the stages. On a fatal error (disk full, delete permission
missing) or Ctrl-C the main thread stops taking new keys, in-flight objects finish or clean up,
verified objects are still deleted, and the run ends with its summary.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, cast

from s3drain.drain.context import RunState
from s3drain.drain.fanout import StreamPolicy
from s3drain.drain.lane_wire import LaneRole
from s3drain.drain.pipeline import run_pipeline
from s3drain.drain.progress import Progress
from s3drain.drain.pruning import Pruner
from s3drain.drain.reporter import Reporter
from s3drain.drain.select import guard_error
from s3drain.drain.settings import DrainSettings
from s3drain.drain.source import Feed
from s3drain.drain.summary import RunInfo, Totals
from s3drain.drain.watchdog import Watchdog
from s3drain.errors import AbortError, ExitCode, S3DrainError, describe
from s3drain.local.audit import AuditLog
from s3drain.local.folders import prepare_local
from s3drain.local.fs import LocalFS
from s3drain.local.ledger import Ledger
from s3drain.local.legacy import take_over_once
from s3drain.local.lock import run_lock
from s3drain.local.paths import prefix_folder
from s3drain.output import SafeStream
from s3drain.records import Status
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
    on_overrun: Callable[[ExitCode], None] | None = None,
    streams: StreamPolicy | None = None,
    feed: Feed | None = None,
    own_process: bool = False,
    lane: LaneRole | None = None,
    progress_to: Callable[[Progress], None] | None = None,
) -> DrainResult:
    """One whole run, always ending in a DrainResult. An error found before anything changed
    (bucket, credentials, local folders, the lock, the ledger, --max-delete) comes back with
    `started=False`; later failures end the run with its summary and their exit code.

    `on_overrun` is called, with the exit code the run would have had, when a run told to stop
    has not ended within STOP_GRACE_SECONDS (the command line exits there and then). `feed`
    replaces the listing as the source of objects (`s3drain watch`). `own_process`: the
    process is s3drain's alone (the command line), so the run may set which cores its threads
    use (`core_pin.py`) and run lanes (`lanes.py`). `lane`: this run is a lane of another
    (`cli/lane.py`), which hands its progress figures to `progress_to`."""
    # The command line wraps its streams already; a caller of the Python API may hand over
    # sys.stderr itself, and a closed pipe there must not end or falsify the run either.
    out = _safe(out)
    err = _safe(err)
    state = RunState(stop=stop or threading.Event())
    watchdog = None
    if on_overrun is not None:
        watchdog = Watchdog(state.stop, lambda: on_overrun(_stopping_code(state)))
        watchdog.start()
    try:
        return _run_drain(
            settings,
            state,
            out=out,
            err=err,
            client=client,
            fs=fs,
            sleep=sleep,
            streams=streams,
            feed=feed,
            own_process=own_process,
            lane=lane,
            progress_to=progress_to,
        )
    finally:
        if watchdog is not None:
            watchdog.finished()


def _safe(stream: TextIO) -> TextIO:
    return stream if isinstance(stream, SafeStream) else cast(TextIO, SafeStream(stream))


def _stopping_code(state: RunState) -> ExitCode:
    return state.fatal.exit_code if state.fatal is not None else ExitCode.INTERRUPTED


def _run_drain(
    settings: DrainSettings,
    state: RunState,
    *,
    out: TextIO,
    err: TextIO,
    client: S3Client | None,
    fs: LocalFS | None,
    sleep: Callable[[float], None] | None,
    streams: StreamPolicy | None,
    feed: Feed | None,
    own_process: bool,
    lane: LaneRole | None,
    progress_to: Callable[[Progress], None] | None,
) -> DrainResult:
    counter = RequestCounter()
    # Direct GETs (and fetch processes) only with the run's own client and file system: a
    # caller's (a test's mock, a fault-injecting seam) would not see requests sent around them.
    direct = client is None and fs is None
    if client is None:
        client = make_client(settings.s3, counter)
    else:
        client.meta.events.register("before-send.s3", counter.on_send)
    fs = fs or LocalFS()
    run_id = lane.run_id if lane else datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    crash_folder = Path(tempfile.gettempdir()) if settings.dry_run else settings.state_dir
    crash_name = f"{run_id}-lane{lane.index + 1}" if lane else run_id
    state.crash_log = crash_folder / f"s3drain-crash-{crash_name}.log"
    reporter: Reporter | None = None
    stopped_early: str | None = None
    try:
        # S3 first (bucket, credentials, endpoint): a wrong setting must not leave folders.
        if lane is not None:  # the run that started this lane has asked and prepared
            versioned, warning = lane.versioned, None
        else:
            preflight_retry = RetryPolicy(
                settings.s3.max_attempts, sleep=sleep, stop_event=state.stop
            )
            versioned, warning = bucket_is_versioned(
                client, settings.bucket, preflight_retry, settings.s3.endpoint_url
            )
            if not settings.dry_run:
                prepare_local([settings.state_dir, settings.raw_dir, settings.processed_dir])
        with _locked(settings, lane) as lock_fd, _ledger(settings, run_id, lane) as ledger:
            reporter = _reporter(
                settings, state, out, err, run_id, feed=feed, lane=lane, progress_to=progress_to
            )
            pruner = None
            if ledger is not None and not settings.dry_run and lane is None:
                pruner = Pruner(
                    ledger, settings.ledger_retention, fatal=state.fail, crashed=state.crashed
                )
            try:
                if warning:
                    reporter.warn(warning)
                stopped_early = run_pipeline(
                    settings,
                    client=client,
                    fs=fs,
                    reporter=reporter,
                    state=state,
                    sleep=sleep,
                    versioned=versioned,
                    ledger=ledger,
                    streams=streams,
                    counter=counter if direct else None,
                    feed=feed,
                    own_process=own_process,
                    lane=lane,
                    lock_fd=lock_fd,
                    run_id=run_id,
                    audit_ready=reporter.open_audit,
                )
            finally:
                if pruner is not None:
                    pruner.close()
                reporter.close()
                if ledger is not None and not settings.dry_run and lane is None:
                    _close_run(settings, ledger, state, reporter)
    except S3DrainError as exc:
        state.fail(exc)
        return _result(
            settings, reporter, state, counter, None, started=False, hint=exc.hint, lane=lane
        )
    except Exception as exc:
        # A bug outside the threads' own guards: still a result, a summary and exit 70.
        state.crashed(exc, "the run")
    return _result(settings, reporter, state, counter, stopped_early, started=True, lane=lane)


def _locked(
    settings: DrainSettings, lane: LaneRole | None
) -> contextlib.AbstractContextManager[int | None]:
    """The lock's descriptor (None in a dry run, and in a lane: the run that started it holds
    the lock, and the lane holds the same descriptor, so the lock lasts while either lives)."""
    if settings.dry_run or lane is not None:
        return contextlib.nullcontext()
    return run_lock(settings.state_dir, settings.local_base_path)


@contextlib.contextmanager
def _ledger(settings: DrainSettings, run_id: str, lane: LaneRole | None) -> Iterator[Ledger | None]:
    """The ledger for this run: read-only in a dry run (None where none exists yet); otherwise
    created on first use, an old install's records taken over once, the run recorded."""
    if settings.dry_run:
        ledger = Ledger.open_read_only(settings.state_dir, settings.local_base_path)
    else:
        ledger = Ledger.open(settings.state_dir, settings.local_base_path)
    try:
        if ledger is not None and lane is not None:
            ledger.join_run(run_id, settings.bucket)
        elif ledger is not None and not settings.dry_run:
            ledger.begin_run(run_id, settings.bucket, settings.prefix)
            take_over_once(
                ledger,
                settings.state_dir,
                settings.raw_dir,
                settings.processed_dir,
                prefix_folder(settings.prefix),
            )
        yield ledger
    finally:
        if ledger is not None:
            ledger.close()


def _close_run(
    settings: DrainSettings, ledger: Ledger, state: RunState, reporter: Reporter
) -> None:
    """Forget what left S3 longer ago than --ledger-retention, and note how the run ended."""
    try:
        ledger.prune(time.time() - settings.ledger_retention)
        ledger.end_run(int(_exit_code(settings, reporter.totals(), state)))
    except S3DrainError as exc:
        state.fail(exc)


def _reporter(
    settings: DrainSettings,
    state: RunState,
    out: TextIO,
    err: TextIO,
    run_id: str,
    *,
    feed: Feed | None,
    lane: LaneRole | None,
    progress_to: Callable[[Progress], None] | None,
) -> Reporter:
    audit = None
    if not settings.dry_run:
        # A lane's audit log was opened (its torn tail cut) by the run that started it; other
        # lanes append to it meanwhile, so a lane never cuts anything.
        audit = AuditLog(settings.audit_log, run_id, settings.bucket, shared=lane is not None)
    return Reporter(
        settled=feed.settled if feed is not None else None,
        audit=audit,
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
        crashed=state.crashed,
        progress_to=progress_to,
    )


def _exit_code(settings: DrainSettings, totals: Totals, state: RunState) -> ExitCode:
    if settings.dry_run and settings.max_delete is not None and not settings.no_delete:
        would_delete = sum(
            totals.counts.get(s.value, 0)
            for s in (Status.DOWNLOADED, Status.PROCESSED, Status.PRESENT)
        )
        if would_delete > settings.max_delete:
            state.fail(guard_error(would_delete, settings.max_delete))
    if state.fatal is not None:
        return state.fatal.exit_code
    if state.stop.is_set():
        return ExitCode.INTERRUPTED
    return ExitCode.PARTIAL if totals.left_in_s3 else ExitCode.OK


def _result(
    settings: DrainSettings,
    reporter: Reporter | None,
    state: RunState,
    counter: RequestCounter,
    stopped_early: str | None,
    *,
    started: bool,
    hint: str | None = None,
    lane: LaneRole | None = None,
) -> DrainResult:
    totals = reporter.totals() if reporter is not None else Totals.empty()
    code = _exit_code(settings, totals, state)
    if state.fatal is not None:
        error: str | None = state.fatal.message
        # (A lane's error goes to the run that started it as it is: that run says it.)
        if started and totals.deleted and error is not None and lane is None:
            # Whatever the message says about "nothing changed" held when it was written; a
            # halt mid-run must say what had changed by then.
            recorded = (
                "each recorded in the audit log"
                if reporter is None or reporter.audit_healthy()
                else "their audit lines that could not be written are owed in the ledger, and "
                "the next run writes them"
            )
            error += (
                f"; before the run stopped, {totals.deleted:,} object(s) had been deleted from S3"
                f", {recorded}"
            )
    elif code is ExitCode.INTERRUPTED:
        error = "interrupted: objects not yet handled stay in S3"
    else:
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
        delete_guard=reporter.guard if reporter else None,
        probe=reporter.probe if reporter else None,
    )
    return DrainResult(
        exit_code=code,
        totals=totals,
        info=info,
        internal_error=state.internal_error,
        started=started,
        hint=hint if hint is not None else (state.fatal.hint if state.fatal else None),
    )
