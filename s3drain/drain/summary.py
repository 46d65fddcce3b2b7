"""What a drain run ends with: its totals, the human summary, and the `--json` object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from s3drain.errors import ExitCode
from s3drain.output import plural
from s3drain.records import Status
from s3drain.units import format_duration, format_size

# The guards that let the server itself refuse anything but the verified object.
EXACT_GUARDS = frozenset({"etag-batch", "if-match", "version-id"})


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
    delete_guard: str | None = None  # how deletes named the verified object (delete_requests.py)
    probe: str | None = None  # what the server was probed to honour


DRY_VERBS = {
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
            fate = DRY_VERBS[status]
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
    if info.delete_guard:
        loose = info.delete_guard in ("head-checked", "none")
        exact = " (NOT exact: see the warning above)" if loose else ""
        probe = f"; server: {info.probe}" if info.probe else ""
        lines.append(f"  deletes    {info.delete_guard}{exact}{probe}")
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
        "delete_guard": info.delete_guard,
        "delete_guard_exact": info.delete_guard in EXACT_GUARDS if info.delete_guard else None,
        "probe": info.probe,
    }
