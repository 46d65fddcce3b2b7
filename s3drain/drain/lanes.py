"""Lanes: a run's objects drained by whole pipelines side by side, one process each.

One interpreter runs Python on one core at a time, and a small object costs a drain about
0.4 CPU-ms of Python (listing, GET, hashing, ledger, link, delete): one process stays near one
core's worth of objects per second, however many cores the host has. Threads spread over two
cores cost more than they give (the interpreter's lock changes hands across cores), and fetch
processes hand each object back to one process that records, links and deletes it, which then
holds the run to its own core. A lane is the whole pipeline: lane K of N lists the prefix and
takes the keys whose CRC32 falls in share K (as `--shard K/N` does), fetches, proves, records,
links and deletes them, into the same folders, the same ledger and the same audit log.

What stays with the run that starts them (`run_lanes` is called after all of it):
- the checks before anything changes, the lock (the lanes hold the same descriptor, so the
  lock lasts while any of them lives), the delete guard and its probe, the sweep of temp files
  and the recovery of what a killed run left: once, before any lane starts;
- the progress line, the per-object lines (each lane's are written here), the summary, the
  exit code, the metrics file and the end of the run in the ledger, from the lanes' figures.

A lane that stops the run (a full disk, S3 gone, a bug) stops the others: the run tells them
as Ctrl-C would, and ends with that lane's error. Ctrl-C reaches the run, which tells the
lanes. A lane dies with the run (PR_SET_PDEATHSIG), so none outlives a run killed with -9: what
each had in flight is what any killed run leaves, and the next run finishes it.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.drain.context import RunState
from s3drain.drain.core_pin import PIN_BELOW
from s3drain.drain.filters import Shard, in_shard
from s3drain.drain.guard import GuardChoice
from s3drain.drain.lane_wire import Channel, LaneEnd, LaneJob, LaneRole, Line, receive
from s3drain.drain.progress import Progress
from s3drain.drain.reporter import Reporter
from s3drain.drain.settings import DrainSettings, usable_cores
from s3drain.drain.source import Feed, Pages
from s3drain.errors import AbortError, ExitCode, S3DrainError
from s3drain.records import ObjectRecord
from s3drain.s3.client import RequestCounter, S3Client
from s3drain.s3.listing import ListCall, list_pages, prefetch
from s3drain.s3.retry import RetryPolicy

MAX_LANES = 8
# By default, lanes from four usable cores up. On this project's 2-core machine, where the S3
# server shares the two cores, two lanes drained 20,000 x 4 KiB at 1.03-1.14x one process
# (the in-memory server; 1.09x at 50,000), but 2,000 at 0.88x and 6,000 at 0.92x: each lane
# starts its own interpreter after the run's checks (about 0.25 s) and lists the prefix
# itself. With the server elsewhere and more cores the share of each lane grows and its start
# does not; --lanes N asks for them anywhere.
AUTO_FROM_CORES = 4
# ... and only for a full first page (1,000 keys) of small objects.
LANES_FROM = 1000
_ENDED_WELL = (ExitCode.OK, ExitCode.PARTIAL, ExitCode.INTERRUPTED)


def lane_count(
    settings: DrainSettings,
    *,
    own_process: bool,
    feed: Feed | None,
    first_page: Callable[[], list[ObjectRecord]],
    cores: Callable[[], int] = usable_cores,
) -> int:
    """How many lanes this run drains with (1: the run is one process). --lanes N where it
    can run at all; by default, from AUTO_FROM_CORES usable cores up, one per core (up to
    MAX_LANES) when the prefix's first listing page is full and its objects average below
    PIN_BELOW, where the run's Python is the limit. Never through the Python API (the host
    process is not s3drain's), in a dry run, for `watch`, or with a limit or a shard (they
    count across the whole run)."""
    if not own_process or feed is not None or settings.dry_run:
        return 1
    if settings.lanes is not None:
        return settings.lanes
    limited = (settings.max_objects, settings.max_bytes, settings.max_delete, settings.shard)
    available = cores()
    if (
        available < AUTO_FROM_CORES
        or any(v is not None for v in limited)
        or settings.processes is not None
    ):
        return 1
    page = first_page()
    if len(page) < LANES_FROM or sum(r.size for r in page) / len(page) >= PIN_BELOW:
        return 1
    return min(available, MAX_LANES)


class FirstPage:
    """The prefix's first listing page, for `lane_count`, asked for at most once. A run that
    goes on in one process lists on from it (`feed`): the look costs no request. A listing
    that fails here is left to the run's own listing, which says why in its words."""

    def __init__(self, client: S3Client, settings: DrainSettings, retry: RetryPolicy) -> None:
        self._send = _Sender(client.list_objects_v2)
        self._pages = list_pages(client, settings.bucket, settings.prefix, retry, call=self._send)
        self._first: list[ObjectRecord] | None = None

    def __call__(self) -> list[ObjectRecord]:
        if self._first is None:
            try:
                self._first = next(self._pages, [])
            except (ClientError, BotoCoreError):
                self._first = []
                self._pages = iter(())
                return []
        return self._first

    def feed(self, bucket: str, prefix: str) -> Feed | None:
        """The listing from the page looked at on (None: none was, or it failed)."""
        if not self._first:
            return None
        first, rest = self._first, self._pages

        def pages(
            client: S3Client, retry: RetryPolicy, stop: threading.Event, call: ListCall | None
        ) -> Pages:
            if call is not None:
                self._send.call = call  # the pages after the first: as the run sends them
            return prefetch(itertools.chain([first], rest), stop)

        return Feed(pages)


class _Sender:
    """A ListObjectsV2 sender that can be replaced between pages."""

    def __init__(self, call: ListCall) -> None:
        self.call = call

    def __call__(self, **params: Any) -> Mapping[str, Any]:
        return self.call(**params)


def lane_listing(bucket: str, prefix: str, share: Shard) -> Feed:
    """A lane's objects: the prefix's listing, keeping only the lane's share of the keys (the
    others are not this lane's to count, filter or show)."""

    def pages(
        client: S3Client, retry: RetryPolicy, stop: threading.Event, call: ListCall | None
    ) -> Pages:
        listed = prefetch(list_pages(client, bucket, prefix, retry, call=call), stop)
        return ([r for r in page if in_shard(r.key, share)] for page in listed)

    return Feed(pages)


@dataclass(frozen=True)
class LaneStart:
    """What the run that starts the lanes hands each of them."""

    run_id: str
    versioned: bool
    guard: GuardChoice | None
    lock_fd: int | None


class LaneFailure(S3DrainError):
    """A lane's own error, ending the whole run with the lane's exit code."""

    def __init__(self, message: str, hint: str | None, exit_code: ExitCode) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


class _Lane:
    def __init__(self, index: int, count: int, process: subprocess.Popen[bytes]) -> None:
        self.index = index
        self.count = count
        self.process = process
        self.end: LaneEnd | None = None
        self.done = threading.Event()
        self.handled = False

    @property
    def name(self) -> str:
        return f"lane {self.index + 1} of {self.count}"


def run_lanes(
    settings: DrainSettings,
    count: int,
    start: LaneStart,
    *,
    reporter: Reporter,
    state: RunState,
    counter: RequestCounter,
    audit_ready: Callable[[], None],
) -> None:
    """Start `count` lanes, show what they do, and wait for every one of them. Their figures
    become the reporter's; the first lane that stops the run stops the others."""
    audit_ready()  # the audit log opened here first: a killed run's torn tail is cut once
    reporter.expect_lanes(count)  # this process lists nothing; the lanes say when they have
    lane_settings = replace(settings, lanes=1, processes=0, progress=False)
    reporter.debug(f"draining in {count} lanes (one process each)")
    lanes: list[_Lane] = []
    wake = threading.Event()  # a lane has ended
    try:
        for index in range(count):
            role = LaneRole(index, count, start.run_id, start.versioned, start.guard)
            lanes.append(_start(LaneJob(lane_settings, role), start.lock_fd, count))
            threading.Thread(
                target=_read,
                args=(lanes[-1], reporter, wake, state.crashed),
                name=f"s3drain-lane_{index}",
                daemon=True,
            ).start()
    except OSError as exc:
        state.fail(AbortError(f"cannot start a lane process: {exc.strerror or exc}"))
    _wait(lanes, wake, reporter, state, counter)


def _start(job: LaneJob, lock_fd: int | None, count: int) -> _Lane:
    process = subprocess.Popen(
        [sys.executable, "-m", "s3drain.cli.lane", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        pass_fds=() if lock_fd is None else (lock_fd,),
        # Ctrl-C reaches the run alone, which tells the lanes (as it tells fetch processes).
        start_new_session=True,
    )
    lane = _Lane(job.role.index, count, process)
    assert process.stdin is not None
    # stdin stays open: the lane takes its end as the run's.
    Channel(process.stdin).send(job)
    return lane


def _read(
    lane: _Lane,
    reporter: Reporter,
    wake: threading.Event,
    crashed: Callable[[BaseException, str], None],
) -> None:
    stream = lane.process.stdout
    assert stream is not None
    try:
        while (message := receive(stream)) is not None:
            if isinstance(message, Line):
                reporter.relay(message.stream, message.text)
            elif isinstance(message, Progress):
                reporter.lane_progress(lane.index, message)
            elif isinstance(message, LaneEnd):
                lane.end = message
    except (OSError, EOFError, ValueError):
        pass  # a lane cut off mid-frame: `_wait` reports it as a lane without an end
    except Exception as exc:
        crashed(exc, f"reading {lane.name}")
    finally:
        lane.done.set()
        wake.set()


def _wait(
    lanes: list[_Lane],
    wake: threading.Event,
    reporter: Reporter,
    state: RunState,
    counter: RequestCounter,
) -> None:
    told = False
    while not all(lane.handled for lane in lanes):
        wake.clear()
        for lane in lanes:
            if lane.done.is_set() and not lane.handled:
                lane.process.wait()
                lane.handled = True
                _ended(lane, reporter, state, counter)
        if state.stop.is_set() and not told:
            told = True  # Ctrl-C, or a lane (or this run) stopped the run: tell them all
            for lane in lanes:
                if lane.process.poll() is None:
                    lane.process.send_signal(signal.SIGTERM)
        wake.wait(0.1)
    for lane in lanes:
        if lane.process.stdin is not None:
            lane.process.stdin.close()


def _ended(lane: _Lane, reporter: Reporter, state: RunState, counter: RequestCounter) -> None:
    end = lane.end
    if end is None:
        code = lane.process.returncode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
        state.fail(
            AbortError(
                f"{lane.name} ended without its figures ({how}): the objects it had in hand "
                "stay in S3 or in the ledger, and the next run finishes them"
            )
        )
        return
    reporter.absorb(lane.index, end.totals)
    for operation, number in end.requests.items():
        counter.add(operation, number)
    if end.exit_code not in _ENDED_WELL:
        state.fail(LaneFailure(end.error or f"{lane.name} failed", end.hint, end.exit_code))
    elif end.exit_code is ExitCode.INTERRUPTED and not state.stop.is_set():
        state.stop.set()  # a lane stopped from outside the run: the run stops as on Ctrl-C
