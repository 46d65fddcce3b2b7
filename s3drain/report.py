"""Counting and output. Stages never print: they hand each outcome to `Reporter.record`, which
counts it, appends its audit line, and shows it (per-object lines, the progress line); at the end
the same counts become the human summary, the `--json` object and the Prometheus metrics file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from s3drain.audit import AuditLog
from s3drain.errors import ExitCode
from s3drain.records import ObjectRecord, Outcome, Status
from s3drain.retry import describe
from s3drain.units import format_duration, format_size

SHOWN_PROBLEMS = 20  # per run, on stderr at normal verbosity; the audit log has them all


@dataclass(frozen=True)
class Totals:
    counts: Mapping[str, int]
    filtered: int
    listed: int
    deleted: int
    bytes_downloaded: int
    bytes_deleted: int
    retries: int
    seconds: float
    bytes_by_status: Mapping[str, int] = field(default_factory=dict)  # listed sizes

    @classmethod
    def empty(cls) -> Totals:
        return cls(
            counts={},
            filtered=0,
            listed=0,
            deleted=0,
            bytes_downloaded=0,
            bytes_deleted=0,
            retries=0,
            seconds=0.0,
        )

    @property
    def left_in_s3(self) -> int:
        return sum(self.counts.get(s.value, 0) for s in Status if s.leaves_object)


@dataclass(frozen=True)
class RunInfo:
    """What the summary says around the counts."""

    command: str
    source: str  # s3://bucket/prefix
    bucket: str
    prefix: str
    destination: str
    audit_log: str | None
    dry_run: bool = False
    no_delete: bool = False
    exit_code: ExitCode = ExitCode.OK
    error: str | None = None
    requests: Mapping[str, int] = field(default_factory=dict)
    stopped_early: str | None = None  # why the run stopped taking objects (limits, abort)
    shard: str | None = None  # "K/N" when --shard was given


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def printable(text: str) -> str:
    """A key as it may be shown on a terminal: control characters, line breaks and the like
    escaped (`\\x1b`, `\\n`), so a hostile key cannot move the cursor or fake a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    return text


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
    ) -> None:
        self._audit = audit
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
        self._progress_visible = False
        self._stop_progress = threading.Event()
        self._progress_thread: threading.Thread | None = None
        if progress:
            self._progress_thread = threading.Thread(
                target=self._progress_loop, name="s3drain-progress", daemon=True
            )
            self._progress_thread.start()

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
            self._show(outcome)

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

    def warn(self, message: str) -> None:
        with self._lock:
            self._line(self._err, f"s3drain: warning: {message}")

    def info(self, message: str) -> None:
        if self._verbosity >= 0:
            with self._lock:
                self._line(self._err, f"s3drain: {message}")

    def sync(self) -> None:
        if self._audit is not None:
            with self._lock:
                try:
                    self._audit.sync()
                except OSError as exc:
                    self._audit_failed = True
                    if self._on_audit_error is None:
                        raise
                    self._on_audit_error(exc)

    def close(self) -> None:
        self._stop_progress.set()
        if self._progress_thread is not None:
            self._progress_thread.join()
        with self._lock:
            self._clear_progress()
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

    # -- output -----------------------------------------------------------------------------

    def _show(self, outcome: Outcome) -> None:
        r = outcome.record
        if self._dry_run:
            target = f" -> {outcome.local_path}" if outcome.local_path else ""
            why = f": {outcome.detail}" if outcome.detail else ""
            verb = _DRY_VERBS[outcome.status]
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
        if self._progress_visible:
            self._err.write("\r\x1b[K")
            self._err.flush()
            self._progress_visible = False

    def _progress_loop(self) -> None:
        while not self._stop_progress.wait(0.5):
            with self._lock:
                self._err.write("\r\x1b[K" + self._progress_text())
                self._err.flush()
                self._progress_visible = True

    def _progress_text(self) -> str:
        done = sum(self._counts.values()) + self._filtered + self._pending
        downloaded = self._bytes_downloaded + self._pending_bytes
        elapsed = max(self._clock() - self._started, 1e-6)
        rate = done / elapsed
        left = sum(self._counts.get(s.value, 0) for s in Status if s.leaves_object)
        text = (
            f"{done:,} objects  {format_size(downloaded)}  {rate:,.0f} obj/s  "
            f"{format_size(downloaded / elapsed)}/s  left in S3 {left:,}"
        )
        if self._listing_done:
            total = self._listed
        elif self._expected is not None:
            total = self._expected
        else:
            return f"{text}  (listed {self._listed:,} so far)"
        remaining = max(total - done, 0)
        eta = format_duration(remaining / rate) if rate > 0 else "?"
        return f"{text}  ETA {eta}"


_DRY_VERBS = {
    Status.DOWNLOADED: "would download",
    Status.PROCESSED: "would delete",  # already in processed/
    Status.PRESENT: "would delete",  # already at its destination
    Status.CONFLICT: "would keep",
    Status.REFUSED: "would refuse",
    Status.CHANGED: "would keep",
    Status.FAILED: "would fail",
    Status.SKIPPED: "would skip",
}

_FATE = {
    Status.DOWNLOADED: "downloaded, verified",
    Status.PROCESSED: "already in the processed folder",
    Status.PRESENT: "already at its destination",
    Status.CONFLICT: "a different local file is in the way",
    Status.REFUSED: "the key cannot be a safe local path",
    Status.CHANGED: "changed in S3 during the run",
    Status.FAILED: "failed after retries",
    Status.SKIPPED: "folder markers",
}


def render_summary(totals: Totals, info: RunInfo) -> str:
    mode = " (dry run: nothing was changed)" if info.dry_run else ""
    lines = [
        f"s3drain {info.command}: {info.source} -> {info.destination}{mode} "
        f"in {format_duration(totals.seconds)}"
    ]
    for status in Status:
        count = totals.counts.get(status.value, 0)
        if count == 0 and (info.dry_run or status is not Status.DOWNLOADED):
            continue
        if info.dry_run:
            fate = _DRY_VERBS[status]
        elif status.leaves_object or status is Status.SKIPPED:
            fate = "left in S3"
        elif info.no_delete:
            fate = "kept in S3 (--no-delete)"
        else:
            fate = "deleted from S3"
        size = f"{format_size(totals.bytes_by_status.get(status.value, 0)):>10}"
        lines.append(f"  {status.value:<11}{count:>10,}  {size}  {fate}: {_FATE[status]}")
    if totals.filtered:
        lines.append(
            f"  {'filtered':<11}{totals.filtered:>10,}  {'':10}  not taken by this run's filters"
        )
    if info.requests:
        by_op = ", ".join(
            f"{op} {n:,}" for op, n in sorted(info.requests.items(), key=lambda i: -i[1])
        )
        lines.append(
            f"  requests {sum(info.requests.values()):,} ({by_op}); retries {totals.retries:,}"
        )
    if info.audit_log:
        lines.append(f"  audit log  {info.audit_log}")
    if info.stopped_early:
        lines.append(f"  stopped early: {info.stopped_early}")
    lines.append(result_line(totals, info))
    return "\n".join(lines)


def result_line(totals: Totals, info: RunInfo) -> str:
    code = int(info.exit_code)
    if info.error:
        return f"result: {info.error} (exit {code})"
    if totals.left_in_s3:
        return f"result: {plural(totals.left_in_s3, 'object')} left in S3, see above (exit {code})"
    return f"result: ok (exit {code})"


def summary_json(totals: Totals, info: RunInfo) -> dict[str, Any]:
    """The stable machine-readable summary (schema 1; documented in the README)."""
    return {
        "schema": 1,
        "command": info.command,
        "bucket": info.bucket,
        "prefix": info.prefix,
        "destination": info.destination,
        "dry_run": info.dry_run,
        "no_delete": info.no_delete,
        "exit_code": int(info.exit_code),
        "error": info.error,
        "stopped_early": info.stopped_early,
        "seconds": round(totals.seconds, 3),
        "listed": totals.listed,
        "filtered": totals.filtered,
        "objects": {s.value: totals.counts.get(s.value, 0) for s in Status},
        "deleted": totals.deleted,
        "left_in_s3": totals.left_in_s3,
        "bytes_downloaded": totals.bytes_downloaded,
        "bytes_deleted": totals.bytes_deleted,
        "bytes": {s.value: totals.bytes_by_status.get(s.value, 0) for s in Status},
        "shard": info.shard,
        "retries": totals.retries,
        "requests": {"total": sum(info.requests.values()), "by_operation": dict(info.requests)},
        "audit_log": info.audit_log,
    }


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# Label values are quoted and may hold '}' (a prefix like `team}x/`): match them as strings.
_LAST_SUCCESS = re.compile(
    r'^s3drain_last_success_timestamp_seconds\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\} (\S+)$', re.M
)


def prometheus_text(
    totals: Totals, info: RunInfo, now: float, previous_success: float | None
) -> str:
    base = f'bucket="{_label_value(info.bucket)}",prefix="{_label_value(info.prefix)}"'
    if info.shard is not None:
        base += f',shard="{info.shard}"'
    last_success = now if info.exit_code == ExitCode.OK else previous_success
    rows: list[tuple[str, str, str, list[tuple[str, float]]]] = [
        (
            "s3drain_objects",
            "Objects the last run handled, by status.",
            "gauge",
            [(f'{base},status="{s.value}"', totals.counts.get(s.value, 0)) for s in Status],
        ),
        (
            "s3drain_filtered_objects",
            "Objects not taken by filters.",
            "gauge",
            [(base, totals.filtered)],
        ),
        ("s3drain_deleted_objects", "Objects deleted from S3.", "gauge", [(base, totals.deleted)]),
        ("s3drain_left_in_s3_objects", "Objects left in S3.", "gauge", [(base, totals.left_in_s3)]),
        (
            "s3drain_downloaded_bytes",
            "Bytes downloaded.",
            "gauge",
            [(base, totals.bytes_downloaded)],
        ),
        (
            "s3drain_requests",
            "S3 requests sent, by operation.",
            "gauge",
            [(f'{base},operation="{op}"', n) for op, n in sorted(info.requests.items())],
        ),
        ("s3drain_retries", "Retried S3 steps.", "gauge", [(base, totals.retries)]),
        (
            "s3drain_duration_seconds",
            "Wall time of the last run.",
            "gauge",
            [(base, totals.seconds)],
        ),
        ("s3drain_exit_code", "Exit code of the last run.", "gauge", [(base, int(info.exit_code))]),
        ("s3drain_last_run_timestamp_seconds", "When the last run ended.", "gauge", [(base, now)]),
    ]
    if last_success is not None:
        rows.append(
            (
                "s3drain_last_success_timestamp_seconds",
                "When a run last ended with exit code 0.",
                "gauge",
                [(base, last_success)],
            )
        )
    out: list[str] = []
    for name, help_text, kind, samples in rows:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{{{labels}}} {_number(value)}" for labels, value in samples)
    return "\n".join(out) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def previous_success(path: Path) -> float | None:
    try:
        match = _LAST_SUCCESS.search(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    return float(match.group(1)) if match else None


def write_atomically(path: Path, text: str) -> None:
    """The textfile collector may read at any moment: it must see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique temp name: two runs writing one path must not share (and truncate) one.
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".s3drain-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)  # the collector runs as another user; mkstemp made it 0600
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def dumps_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=False)
