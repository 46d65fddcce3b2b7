"""How a watcher says what it did: the status line it logs while watching, the lines and JSON
its summary adds to a run's, and its Prometheus figures (refreshed while it runs)."""

from __future__ import annotations

from typing import Any

from s3drain.drain.metrics import Row, label_value, number, render_rows
from s3drain.events.report import InboxCounters
from s3drain.watch.stats import LATENCY_BUCKETS, WatchFigures


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def status_line(figures: WatchFigures, inbox: InboxCounters) -> str:
    drained = sum(figures.delivered.values())
    return (
        f"watch: {drained:,} delivered (events {figures.found['event']:,} found, reconcile "
        f"{figures.found['reconcile']:,}); messages {inbox.received:,} received, "
        f"{inbox.deleted:,} deleted, {inbox.left:,} left, {inbox.bad:,} bad, "
        f"{inbox.in_flight:,} held (oldest {_seconds(inbox.oldest_age)}); upload to settled "
        f"p50 {_seconds(figures.p50)}, p95 {_seconds(figures.p95)}"
    )


def summary_lines(figures: WatchFigures, inbox: InboxCounters) -> str:
    return "\n".join(
        [
            f"  found      events {figures.found['event']:,}, reconcile passes "
            f"{figures.reconcile_passes:,} found {figures.found['reconcile']:,}; "
            f"{figures.merged:,} event(s) joined an object already in flight",
            f"  messages   {inbox.received:,} received, {inbox.deleted:,} deleted, "
            f"{inbox.left:,} left to come back, {inbox.bad:,} not S3 events (left for the "
            f"dead-letter queue), {inbox.test_events:,} test events, {inbox.ignored:,} records "
            f"for another bucket or prefix, {inbox.released:,} released at the stop",
            f"  latency    upload to settled (file in place, object deleted) p50 "
            f"{_seconds(figures.p50)}, "
            f"p95 {_seconds(figures.p95)} ({figures.latency_count:,} objects)",
        ]
    )


def summary_json(figures: WatchFigures, inbox: InboxCounters) -> dict[str, Any]:
    return {
        "found": dict(figures.found),
        "delivered": dict(figures.delivered),
        "reconcile_passes": figures.reconcile_passes,
        "filtered_events": figures.filtered,
        "merged_events": figures.merged,
        "messages": {
            "received": inbox.received,
            "deleted": inbox.deleted,
            "left": inbox.left,
            "bad": inbox.bad,
            "test_events": inbox.test_events,
            "ignored": inbox.ignored,
            "released": inbox.released,
            "visibility_lost": inbox.visibility_lost,
            "delete_failed": inbox.delete_failed,
            "in_flight": inbox.in_flight,
            "oldest_age_seconds": inbox.oldest_age,
        },
        "latency_seconds": {
            "p50": figures.p50,
            "p95": figures.p95,
            "count": figures.latency_count,
            "sum": round(figures.latency_sum, 3),
        },
    }


def metrics_text(
    figures: WatchFigures, inbox: InboxCounters, *, bucket: str, prefix: str, now: float
) -> str:
    base = f'bucket="{label_value(bucket)}",prefix="{label_value(prefix)}"'
    messages = {
        "received": inbox.received,
        "deleted": inbox.deleted,
        "left": inbox.left,
        "bad": inbox.bad,
        "test": inbox.test_events,
        "ignored": inbox.ignored,
        "released": inbox.released,
    }
    rows: list[Row] = [
        (
            "s3drain_watch_found_objects",
            "Objects the watcher handed to the pipeline, by what named them.",
            "counter",
            [(f'{base},source="{s}"', n) for s, n in sorted(figures.found.items())],
        ),
        (
            "s3drain_watch_delivered_objects",
            "Objects the watcher downloaded, by what named them.",
            "counter",
            [(f'{base},source="{s}"', n) for s, n in sorted(figures.delivered.items())],
        ),
        (
            "s3drain_watch_reconcile_passes",
            "Listing passes of the prefix.",
            "counter",
            [(base, figures.reconcile_passes)],
        ),
        (
            "s3drain_watch_messages",
            "SQS messages, by what became of them.",
            "counter",
            [(f'{base},outcome="{k}"', n) for k, n in messages.items()],
        ),
        (
            "s3drain_watch_messages_in_flight",
            "Messages held now.",
            "gauge",
            [(base, inbox.in_flight)],
        ),
        (
            "s3drain_watch_oldest_message_age_seconds",
            "Since the oldest message held was sent (0 when none is held).",
            "gauge",
            [(base, inbox.oldest_age or 0.0)],
        ),
        (
            "s3drain_watch_updated_timestamp_seconds",
            "When these figures were written.",
            "gauge",
            [(base, now)],
        ),
    ]
    out = render_rows(rows)
    name = "s3drain_watch_latency_seconds"
    out.append(
        f"# HELP {name} From an upload (the event's eventTime) to its object settled: the file "
        "in place and the object deleted."
    )
    out.append(f"# TYPE {name} histogram")
    bounds = [*(number(b) for b in LATENCY_BUCKETS), "+Inf"]
    for bound, count in zip(bounds, figures.latency_buckets, strict=True):
        out.append(f'{name}_bucket{{{base},le="{bound}"}} {count}')
    out.append(f"{name}_sum{{{base}}} {number(figures.latency_sum)}")
    out.append(f"{name}_count{{{base}}} {figures.latency_count}")
    return "\n".join(out) + "\n"
