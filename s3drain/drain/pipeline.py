"""The stages of one run, built and joined: sweep and recovery of what a killed run left, the
--max-delete guard, then the listing dispatched to the workers, the transfers and the deleter."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from s3drain.drain.context import Context, RunState
from s3drain.drain.delete_requests import DeleteGuard
from s3drain.drain.deleter import DeletePolicy, Deleter
from s3drain.drain.direct_setup import set_up_direct
from s3drain.drain.dispatch import dispatch
from s3drain.drain.fanout import FanOut, StreamPolicy
from s3drain.drain.fetch import Fetcher
from s3drain.drain.filters import Shard
from s3drain.drain.guard import GuardChoice, choose_guard, probed
from s3drain.drain.lane_wire import LaneRole
from s3drain.drain.lanes import FirstPage, LaneStart, lane_count, lane_listing, run_lanes
from s3drain.drain.linker import Linker
from s3drain.drain.recovery import recover
from s3drain.drain.reporter import Reporter
from s3drain.drain.select import guard_deletes
from s3drain.drain.settings import DrainSettings
from s3drain.drain.slots import Backlog, GetSlots
from s3drain.drain.source import Feed, listing
from s3drain.drain.transfer import Transfer, sweep_temp_files
from s3drain.errors import AbortError, describe
from s3drain.local.fs import LocalFS
from s3drain.local.ledger import Ledger
from s3drain.local.paths import Layout
from s3drain.records import Outcome
from s3drain.s3.breaker import Breaker
from s3drain.s3.client import RequestCounter, S3Client
from s3drain.s3.retry import RetryPolicy


def _guard(
    settings: DrainSettings,
    *,
    client: S3Client,
    retry: RetryPolicy,
    ledger: Ledger | None,
    reporter: Reporter,
    versioned: bool,
) -> GuardChoice | None:
    """Before anything changes: how deletes will name their objects (--require-exact-delete
    and a refused --delete-mode stop the run here)."""
    if settings.no_delete:
        return None
    probe = probed(settings, client, retry, ledger) if settings.conditional_delete else None
    if probe is None and settings.conditional_delete:
        reporter.delete_guard("not probed yet (a real run probes; --probe probes now)", None)
        return None
    choice = choose_guard(settings, probe, versioned)
    reporter.delete_guard(choice.guard.value, probe.describe() if probe else None)
    if choice.note:
        reporter.warn(choice.note)
    return choice


def _lane_guard(lane: LaneRole, reporter: Reporter) -> GuardChoice | None:
    """A lane's guard: chosen (and said) by the run that started it."""
    if lane.guard is not None:
        probe = lane.guard.probe
        reporter.delete_guard(lane.guard.guard.value, probe.describe() if probe else None)
    return lane.guard


def _finish_interrupted(
    settings: DrainSettings,
    *,
    client: S3Client,
    fs: LocalFS,
    reporter: Reporter,
    retry: RetryPolicy,
    ledger: Ledger | None,
    state: RunState,
) -> bool:
    """Temp files a killed run left are swept; its unfinished ledger rows are completed.
    False: the disk failed under it, and the run stops here."""
    assert ledger is not None
    try:
        swept = sweep_temp_files(str(settings.raw_dir), fs)
        if swept:
            reporter.info(f"removed {swept} temporary file(s) left by an interrupted run")
        recovered = recover(
            ledger,
            client,
            settings.bucket,
            retry,
            fs,
            record=reporter.record,
            can_record=reporter.audit_healthy,
        )
    except OSError as exc:
        # A failing disk, not a bug: exit 5 with what happened, not 70.
        state.fail(
            AbortError(
                f"cannot clean up after an interrupted run under {settings.local_base_path}: "
                f"{describe(exc)}; nothing was downloaded or deleted"
            )
        )
        return False
    if str(recovered):
        reporter.info(f"interrupted run: {recovered}")
    return True


def run_pipeline(
    settings: DrainSettings,
    *,
    client: S3Client,
    fs: LocalFS,
    reporter: Reporter,
    state: RunState,
    sleep: Callable[[float], None] | None,
    versioned: bool,
    ledger: Ledger | None,
    streams: StreamPolicy | None = None,
    counter: RequestCounter | None = None,
    feed: Feed | None = None,
    own_process: bool = False,
    lane: LaneRole | None = None,
    lock_fd: int | None = None,
    run_id: str = "",
    audit_ready: Callable[[], None] = lambda: None,
) -> str | None:
    """Runs the stages; with a `counter` (the run made its own client), small objects are
    fetched by direct GETs, in fetch processes where more than one core is usable; in lanes
    (`lanes.py`) where the run is the command line's and its objects are many and small."""
    # Shared by every request of the run: a dead endpoint stops the run (exit 5), a blip does not.
    breaker = Breaker(on_trip=lambda message: state.fail(AbortError(message)))
    retry = RetryPolicy(
        max_attempts=settings.s3.max_attempts,
        sleep=sleep,
        on_retry=reporter.retrying,
        stop_event=state.stop,
        breaker=breaker,
    )
    if lane is not None:
        # A lane's guard was chosen (and said), and a killed run's leftovers finished, by the
        # run that started it.
        choice = _lane_guard(lane, reporter)
        feed = lane_listing(settings.bucket, settings.prefix, Shard(lane.index, lane.count))
    else:
        choice = _guard(
            settings,
            client=client,
            retry=retry,
            ledger=ledger,
            reporter=reporter,
            versioned=versioned,
        )
        if settings.match is not None:
            reporter.warn(
                "--match / S3DRAIN_MATCH no longer does anything: a local file counts as an "
                "object only when the ledger or the file's content proves it"
            )
        if not settings.dry_run and not _finish_interrupted(
            settings,
            client=client,
            fs=fs,
            reporter=reporter,
            retry=retry,
            ledger=ledger,
            state=state,
        ):
            return None
        if counter is not None and not state.stop.is_set():
            look = FirstPage(client, settings, retry)
            lanes = lane_count(settings, own_process=own_process, feed=feed, first_page=look)
            feed = feed or look.feed(settings.bucket, settings.prefix)
            if lanes > 1:
                start = LaneStart(run_id, versioned, choice, lock_fd)
                run_lanes(
                    settings,
                    lanes,
                    start,
                    reporter=reporter,
                    state=state,
                    counter=counter,
                    audit_ready=audit_ready,
                )
                return None
    return _run_stages(
        settings,
        client=client,
        fs=fs,
        reporter=reporter,
        state=state,
        retry=retry,
        versioned=versioned,
        ledger=ledger,
        streams=streams,
        counter=counter,
        feed=feed,
        own_process=own_process,
        choice=choice,
    )


def _run_stages(
    settings: DrainSettings,
    *,
    client: S3Client,
    fs: LocalFS,
    reporter: Reporter,
    state: RunState,
    retry: RetryPolicy,
    versioned: bool,
    ledger: Ledger | None,
    streams: StreamPolicy | None,
    counter: RequestCounter | None,
    feed: Feed | None,
    own_process: bool,
    choice: GuardChoice | None,
) -> str | None:
    """The stages built and joined: listing (or `feed`) -> workers -> linker -> deleter."""
    layout = Layout.create(
        str(settings.raw_dir),
        str(settings.processed_dir),
        settings.prefix,
        probe=not settings.dry_run,
    )
    if settings.max_delete is not None and not (settings.no_delete or settings.dry_run):
        guard_deletes(
            settings, client=client, layout=layout, retry=retry, reporter=reporter, ledger=ledger
        )

    part_pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="s3drain-stream")
    backlog = Backlog()
    direct = None
    if counter is not None and not settings.dry_run:
        direct = set_up_direct(settings, client, counter, state, reporter, own_process=own_process)
    fetcher = Fetcher(
        client=client,
        bucket=settings.bucket,
        retry=retry,
        fs=fs,
        pool=part_pool,
        multipart_threshold=settings.multipart_threshold,
        part_size=settings.part_size,
        stop=state.stop,
        # A worker's own GET, and as many again for large objects' extra streams: the
        # connection pool is sized for that (2 x workers + 4).
        slots=GetSlots(2 * settings.workers),
        backlog=backlog,
        streams=streams or FanOut(min(settings.max_streams, settings.workers)),
        get_object=direct.streams.get_object if direct else None,
    )
    if direct is not None:
        transfer = Transfer(fetcher, fs, direct.pool, direct.switch, direct.pin)
    else:
        transfer = Transfer(fetcher, fs)
    deleter = linker = None
    if not settings.dry_run:
        assert ledger is not None
        deleter = Deleter(
            client,
            DeletePolicy(
                bucket=settings.bucket,
                guard=choice.guard if choice else DeleteGuard.NONE,
                send=not settings.no_delete,
                batch_size=settings.delete_batch_size,
                flush_seconds=settings.delete_flush_seconds,
                single_workers=settings.workers,
                max_deletes=settings.max_delete,
            ),
            # Verified objects are deleted even while the run halts: no early stop on their retries.
            retry=replace(retry, stop_event=None),
            fs=fs,
            ledger=ledger,
            record=reporter.record_pending,
            can_record=reporter.audit_healthy,
            room_to_record=reporter.room_to_record,
            sync=reporter.sync,
            fatal=state.fail,
            crashed=state.crashed,
            delete_objects=direct.deletes if direct else None,
        )
        settle = deleter.submit

        def placed(outcome: Outcome) -> None:
            reporter.pending(outcome)  # counted on the progress line until its delete
            settle(outcome)

        linker = Linker(
            fs,
            ledger,
            linked=placed,
            record=reporter.record,
            fatal=state.fail,
            crashed=state.crashed,
        )
    ctx = Context(
        settings,
        layout,
        reporter,
        transfer,
        deleter,
        linker,
        state,
        client,
        retry,
        ledger,
        versioned,
        backlog,
        direct.listing if direct else None,
    )
    try:
        return dispatch(ctx, feed or listing(settings.bucket, settings.prefix))
    finally:
        # In the order objects flow: the workers are done (dispatch waits for them), the
        # linker places what they fetched, the deleter settles what it placed.
        if linker is not None:
            linker.close()
        if deleter is not None:
            deleter.close()
        part_pool.shutdown()
        if direct is not None:
            direct.close()
