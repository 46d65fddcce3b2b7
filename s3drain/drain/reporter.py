"""Counting and output while a drain runs. Stages never print: they hand each outcome to
`Reporter.record`, which counts it, appends its audit line, and shows it (per-object lines, the
progress line). At the end `totals()` feeds the summary, `--json` and the metrics file.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

from s3drain.drain.progress import Progress, ProgressLine, ProgressRelay
from s3drain.drain.summary import DRY_VERBS, Totals
from s3drain.errors import describe
from s3drain.local.audit import AuditLog
from s3drain.output import mask, printable
from s3drain.records import ObjectRecord, Outcome, Status
from s3drain.units import format_size

SHOWN_PROBLEMS = 20  # per run, on stderr at normal verbosity; the audit log has them all


class Reporter:
    def __init__(
        self,
        *,
        audit: AuditLog | None,
        verbosity: int = 0,
        progress: bool = False,
        dry_run: bool = False,
        out: TextIO,
        err: TextIO,
        secrets: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        on_audit_error: Callable[[OSError], None] | None = None,
        dry_run_lines_to: TextIO | None = None,
        expected_objects: int | None = None,
        crashed: Callable[[BaseException, str], None] | None = None,
        settled: Callable[[Outcome], None] | None = None,
        progress_to: Callable[[Progress], None] | None = None,
    ) -> None:
        self._audit = audit
        self._settled = settled  # told each object's one outcome, after it is recorded
        self._verbosity = verbosity
        self._dry_run = dry_run
        self._out = out
        self._err = err
        self._dry_out = dry_run_lines_to or out
        self._secrets = tuple(secrets)
        self._clock = clock
        self._on_audit_error = on_audit_error
        self._audit_failed = False
        self._lock = threading.RLock()
        self._started = clock()
        self._counts: Counter[str] = Counter()
        self._sizes: Counter[str] = Counter()
        self._expected = expected_objects  # --max-objects: an ETA before the listing ends
        # Handed to the deleter, not yet recorded: the progress line counts them meanwhile.
        self._pending = 0
        self._pending_bytes = 0
        self._filtered = 0
        self._listed = 0
        self._listing_done = False
        self._deleted = 0
        self._bytes_downloaded = 0
        self._bytes_deleted = 0
        self._retries = 0
        self._problems_shown = 0
        self.guard: str | None = None
        self.probe: str | None = None
        # The figures of lanes still running (`lanes.py`), by lane, until their totals come.
        self._lanes: dict[int, Progress] = {}
        self._lanes_expected = 0
        self._lanes_ended = 0
        self._progress: ProgressLine | ProgressRelay | None = None
        if progress:
            self._progress = ProgressLine(
                err, self._lock, self._progress_figures, crashed or _ignore
            )
        elif progress_to is not None:  # a lane: its run draws the line
            self._progress = ProgressRelay(
                self._lock, self._progress_figures, progress_to, crashed or _ignore
            )
        if self._progress is not None:
            self._progress.start()

    # -- what the stages call ---------------------------------------------------------------

    def pending(self, outcome: Outcome) -> None:
        """The object is verified and waits for its delete: progress counts it already."""
        with self._lock:
            self._pending += 1
            self._pending_bytes += outcome.bytes_downloaded

    def record_pending(self, outcome: Outcome) -> None:
        """The deleter's verdict on an object announced with `pending`."""
        with self._lock:
            self._pending -= 1
            self._pending_bytes -= outcome.bytes_downloaded
            self.record(outcome)

    @property
    def audited(self) -> bool:
        """Did this run write to the audit log?"""
        return self._audit is not None and self._audit.lines > 0

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            self._counts[outcome.status.value] += 1
            self._sizes[outcome.status.value] += outcome.record.size
            self._bytes_downloaded += outcome.bytes_downloaded
            if outcome.deleted:
                self._deleted += 1
                self._bytes_deleted += outcome.record.size
            if self._audit is not None and not self._audit_failed:
                try:
                    self._audit.write(outcome)
                except OSError as exc:
                    self._audit_failed = True
                    if self._on_audit_error is None:
                        raise
                    self._on_audit_error(exc)
                except BaseException:
                    # A bug in the writer: it is not trusted with another line, so nothing more
                    # is deleted, and the lines it could not write stay owed in the ledger.
                    self._audit_failed = True
                    raise
            self._show(outcome)
        if self._settled is not None:
            self._settled(outcome)

    def room_to_record(self, outcomes: Sequence[Outcome]) -> bool:
        """Before a delete batch is sent: can the audit log take the batch's lines? (A delete
        whose line cannot be written must not be sent.)"""
        if self._audit is None:
            return True
        estimate = sum(600 + 3 * (len(o.record.key) + len(o.local_path or "")) for o in outcomes)
        try:
            return self._audit.has_room(estimate)
        except OSError:
            return False

    def audit_healthy(self) -> bool:
        """False once an audit line could not be written (or synced): nothing more may be
        deleted, since its deletion could not be recorded."""
        with self._lock:
            return not self._audit_failed

    def filtered(self, record: ObjectRecord, why: str) -> None:
        with self._lock:
            self._filtered += 1
            if self._verbosity >= 1:
                self._line(self._err, f"{'filtered':<10} {printable(record.key)}: {why}")

    def listed(self, count: int) -> None:
        with self._lock:
            self._listed += count

    def listing_finished(self) -> None:
        with self._lock:
            self._listing_done = True

    def retrying(self, what: str, exc: BaseException, attempt: int) -> None:
        with self._lock:
            self._retries += 1
            if self._verbosity >= 2:
                self._line(
                    self._err, f"{'retry':<10} {what} after attempt {attempt}: {describe(exc)}"
                )

    def delete_guard(self, guard: str, probe: str | None) -> None:
        """How this run's deletes are tied to the verified objects, for the summary."""
        with self._lock:
            self.guard = guard
            self.probe = probe

    def warn(self, message: str) -> None:
        with self._lock:
            self._line(self._err, f"s3drain: warning: {message}")

    def debug(self, message: str) -> None:
        """At -vv only: how the run works here (which GET path, ...)."""
        if self._verbosity >= 2:
            with self._lock:
                self._line(self._err, f"s3drain: {message}")

    def info(self, message: str) -> None:
        if self._verbosity >= 0:
            with self._lock:
                self._line(self._err, f"s3drain: {message}")

    def sync(self) -> bool:
        """fsync the audit log: True when every line written so far is on disk."""
        if self._audit is not None:
            with self._lock:
                try:
                    self._audit.sync()
                except OSError as exc:
                    self._audit_failed = True
                    if self._on_audit_error is None:
                        raise
                    self._on_audit_error(exc)
                    return False
                except BaseException:
                    self._audit_failed = True
                    raise
        return True

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        with self._lock:
            if self._audit is not None:
                self._audit.close()

    def totals(self) -> Totals:
        with self._lock:
            return Totals(
                counts=dict(self._counts),
                filtered=self._filtered,
                listed=self._listed,
                deleted=self._deleted,
                bytes_downloaded=self._bytes_downloaded,
                bytes_deleted=self._bytes_deleted,
                retries=self._retries,
                seconds=self._clock() - self._started,
                bytes_by_status=dict(self._sizes),
            )

    # -- lanes (`lanes.py`): the run that started them shows and counts what they did --------

    def open_audit(self) -> None:
        """Before lanes start appending to the audit log: opened (a torn tail cut) here."""
        if self._audit is not None:
            with self._lock:
                self._audit.open_now()

    def relay(self, stream: str, text: str) -> None:
        """A line a lane wrote, written here so that it does not mix with the progress line."""
        with self._lock:
            self._line(self._out if stream == "out" else self._err, text)

    def expect_lanes(self, count: int) -> None:
        """This run lists nothing itself: its listing is done when every lane's is."""
        with self._lock:
            self._lanes_expected = count
            self._listing_done = True

    def lane_progress(self, lane: int, figures: Progress) -> None:
        with self._lock:
            self._lanes[lane] = figures

    def absorb(self, lane: int, totals: Totals) -> None:
        """A lane's totals at its end: counted as this run's own from now on."""
        with self._lock:
            self._lanes.pop(lane, None)
            self._lanes_ended += 1
            self._counts.update(totals.counts)
            self._sizes.update(totals.bytes_by_status)
            self._filtered += totals.filtered
            self._listed += totals.listed
            self._deleted += totals.deleted
            self._bytes_downloaded += totals.bytes_downloaded
            self._bytes_deleted += totals.bytes_deleted
            self._retries += totals.retries

    # -- output -----------------------------------------------------------------------------

    def _show(self, outcome: Outcome) -> None:
        r = outcome.record
        if self._dry_run:
            target = f" -> {outcome.local_path}" if outcome.local_path else ""
            why = f": {outcome.detail}" if outcome.detail else ""
            verb = DRY_VERBS[outcome.status]
            key = printable(r.key)
            self._line(self._dry_out, f"{verb:<16} {key}{target} ({format_size(r.size)}){why}")
            return
        problem = outcome.status.leaves_object
        if self._verbosity >= 1:
            target = f" -> {outcome.local_path}" if outcome.local_path else ""
            checks = f", {outcome.verified}" if outcome.verified else ""
            fate = "deleted from S3" if outcome.deleted else "kept in S3"
            why = f": {outcome.detail}" if outcome.detail else ""
            size = format_size(r.size)
            key = printable(r.key)
            line = f"{outcome.status.value:<10} {key}{target} ({size}{checks}) {fate}{why}"
            self._line(self._err, line)
        elif problem:  # even with -q: a cron mail should say which objects need attention
            self._problems_shown += 1
            if self._problems_shown <= SHOWN_PROBLEMS:
                key = printable(r.key)
                self._line(self._err, f"s3drain: {outcome.status.value}: {key}: {outcome.detail}")
            elif self._problems_shown == SHOWN_PROBLEMS + 1:
                self._line(self._err, "s3drain: more objects left in S3: see the audit log")

    def _line(self, stream: TextIO, text: str) -> None:
        self._clear_progress()
        stream.write(mask(text, self._secrets) + "\n")
        stream.flush()

    def _clear_progress(self) -> None:
        if self._progress is not None:
            self._progress.clear()

    def _progress_figures(self) -> Progress:
        lanes = self._lanes.values()
        return Progress(
            done=sum(self._counts.values())
            + self._filtered
            + self._pending
            + sum(p.done for p in lanes),
            downloaded=self._bytes_downloaded
            + self._pending_bytes
            + sum(p.downloaded for p in lanes),
            left_in_s3=sum(self._counts.get(s.value, 0) for s in Status if s.leaves_object)
            + sum(p.left_in_s3 for p in lanes),
            elapsed=self._clock() - self._started,
            listed=self._listed + sum(p.listed for p in lanes),
            listing_done=self._listing_done
            and len(self._lanes) + self._lanes_ended >= self._lanes_expected
            and all(p.listing_done for p in lanes),
            expected=self._expected,
        )


def _ignore(exc: BaseException, where: str) -> None:
    """Without a run to stop (a reporter on its own, in tests), a broken progress line just
    stops drawing."""
