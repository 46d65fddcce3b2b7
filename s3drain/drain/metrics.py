"""The run's figures in Prometheus text format, written atomically for node_exporter's textfile
collector; the time of the last success survives failed runs."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from s3drain.drain.summary import RunInfo, Totals
from s3drain.errors import ExitCode
from s3drain.records import Status


def label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# Label values are quoted and may hold '}' (a prefix like `team}x/`): match them as strings.
_LAST_SUCCESS = re.compile(
    r'^s3drain_last_success_timestamp_seconds\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\} (\S+)$', re.M
)


def prometheus_text(
    totals: Totals, info: RunInfo, now: float, previous_success: float | None
) -> str:
    base = f'bucket="{label_value(info.bucket)}",prefix="{label_value(info.prefix)}"'
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
        (
            "s3drain_delete_guard",
            "How the last run's deletes named the verified object (1 for the guard used).",
            "gauge",
            [(f'{base},guard="{info.delete_guard}"', 1)] if info.delete_guard else [],
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
    return "\n".join(render_rows(rows)) + "\n"


Row = tuple[str, str, str, list[tuple[str, float]]]  # name, help, type, (labels, value) samples


def render_rows(rows: list[Row]) -> list[str]:
    """Prometheus text lines: HELP, TYPE and the samples of each metric."""
    out: list[str] = []
    for name, help_text, kind, samples in rows:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{{{labels}}} {number(value)}" for labels, value in samples)
    return out


def number(value: float) -> str:
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
