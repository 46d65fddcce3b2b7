"""One watcher, from its first check to its result: the drain's run (`drain/run.run_drain`) fed
by `EventFeed` instead of a listing, with the queue's inbox beside it, a thread that releases
the unfinished messages the moment a stop comes and refreshes the figures while watching."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TextIO

from s3drain.drain.run import DrainResult, run_drain
from s3drain.errors import ExitCode, describe
from s3drain.events.client import make_sqs_client
from s3drain.events.inbox import Inbox
from s3drain.events.report import InboxCounters, Note
from s3drain.output import mask
from s3drain.records import Status
from s3drain.s3.breaker import Breaker
from s3drain.s3.retry import RetryPolicy
from s3drain.watch.feed import EventFeed
from s3drain.watch.report import metrics_text, status_line
from s3drain.watch.settings import WatchSettings
from s3drain.watch.stats import WatchFigures, WatchStats

STATUS_EVERY = 10.0  # seconds between status lines (when something changed) and metrics files
# --once: how much longer than a long poll a receiver rests on a drained queue, so the polls
# still out when it began answer and the feed sees the proof before the rest ends.
REST_MARGIN = 1.0
_LOUD_NOTES = frozenset({"bad", "left", "visibility-lost", "delete-failed"})
_NO_MESSAGES = InboxCounters(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None)


@dataclass(frozen=True)
class WatchResult:
    drain: DrainResult
    figures: WatchFigures
    inbox: InboxCounters


def run_watch(
    settings: WatchSettings,
    *,
    out: TextIO,
    err: TextIO,
    stop: threading.Event,
    on_overrun: Callable[[ExitCode], None] | None = None,
    write_metrics: Callable[[str], None] | None = None,
    sqs_client: Any = None,
    status_every: float = STATUS_EVERY,
    own_process: bool = False,
) -> WatchResult:
    drain = settings.drain
    secrets = drain.s3.secrets()
    sqs = sqs_client or make_sqs_client(drain.s3, settings.sqs)
    say = _Lines(err, secrets)
    stats = WatchStats()
    note = _note_printer(say, drain.verbosity)

    def make_inbox() -> Inbox:
        return Inbox(
            sqs,
            settings.sqs,
            bucket=drain.bucket,
            prefix=drain.prefix,
            retry=RetryPolicy(max_attempts=drain.s3.max_attempts),
            breaker=Breaker(),
            on_note=note,
            rest_when_drained=settings.sqs.wait_seconds + REST_MARGIN if settings.once else 0.0,
        )

    feed = EventFeed(
        make_inbox,
        stats,
        bucket=drain.bucket,
        prefix=drain.prefix,
        reconcile=settings.reconcile,
        once=settings.once,
        min_age=drain.min_age,
        no_delete=drain.no_delete,
    )
    done = threading.Event()

    def figures() -> tuple[WatchFigures, InboxCounters]:
        inbox = feed.inbox
        return stats.figures(), inbox.counters() if inbox is not None else _NO_MESSAGES

    def beside() -> None:
        """Releases at a stop; every `status_every`, the figures (when they moved)."""
        released = False
        last_line = ""
        next_status = time.monotonic() + status_every
        while not done.wait(0.1):
            inbox = feed.inbox
            if stop.is_set() and not released and inbox is not None:
                released = True
                inbox.release_unfinished()
            if time.monotonic() < next_status:
                continue
            next_status = time.monotonic() + status_every
            now_figures, counters = figures()
            if write_metrics is not None:
                write_metrics(_metrics(settings, now_figures, counters))
            line = status_line(now_figures, counters)
            if drain.verbosity >= 0 and line != last_line:
                say(f"s3drain: {line}")
            last_line = line

    thread = threading.Thread(target=beside, name="s3drain-watch", daemon=True)
    thread.start()
    try:
        result = run_drain(
            drain,
            out=out,
            err=err,
            stop=stop,
            on_overrun=on_overrun,
            feed=feed.feed(),
            own_process=own_process,
        )
    finally:
        done.set()
        thread.join()
        if feed.inbox is not None:
            # Settled messages are deleted, the rest made visible again; a receive still in
            # its long poll is not waited for long (what it brings comes back on its own).
            feed.inbox.close(timeout=5.0)
        if sqs_client is None:
            sqs.close()
    now_figures, counters = figures()
    return WatchResult(_as_watch(result, feed.inbox), now_figures, counters)


def _as_watch(result: DrainResult, inbox: Inbox | None) -> DrainResult:
    """The run's result, told as a watcher's."""
    info = replace(result.info, command="watch")
    changed = result.totals.counts.get(Status.CHANGED.value, 0)
    if result.exit_code is ExitCode.PARTIAL and result.totals.left_in_s3 == changed:
        # A stale event (its object overwritten or deleted before its GET) is routine for a
        # watcher: the newer version has an event of its own. Only refusals, conflicts and
        # failures make a watcher's result partial.
        info = replace(info, exit_code=ExitCode.OK)
        result = replace(result, exit_code=ExitCode.OK)
    if result.exit_code is ExitCode.INTERRUPTED and info.error is not None:
        info = replace(
            info,
            error="stopped: objects in flight were finished, messages not settled were made "
            "visible again for the next watcher",
        )
    failure = inbox.failure if inbox is not None else None
    if failure is not None and result.exit_code in (ExitCode.OK, ExitCode.PARTIAL):
        # SQS failed after the last page (a delete of messages denied): the run's objects
        # are settled, the queue is not.
        info = replace(info, exit_code=ExitCode.ABORTED, error=describe(failure))
        result = replace(result, exit_code=ExitCode.ABORTED)
    return replace(result, info=info)


def _metrics(settings: WatchSettings, figures: WatchFigures, counters: InboxCounters) -> str:
    return metrics_text(
        figures,
        counters,
        bucket=settings.drain.bucket,
        prefix=settings.drain.prefix,
        now=time.time(),
    )


def _note_printer(say: Callable[[str], None], verbosity: int) -> Callable[[Note], None]:
    def note(n: Note) -> None:
        if n.kind in _LOUD_NOTES and verbosity >= 0:
            say(f"s3drain: warning: message {n.message_id}: {n.kind}: {n.detail}")
        elif verbosity >= 1:
            say(f"s3drain: message {n.message_id}: {n.kind}: {n.detail}")

    return note


class _Lines:
    """One line at a time on stderr, secrets masked, from any thread."""

    def __init__(self, err: TextIO, secrets: tuple[str, ...]) -> None:
        self._err = err
        self._secrets = secrets
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self._lock:
            self._err.write(mask(text, self._secrets) + "\n")
            self._err.flush()
