"""The watch scenario's tables in RESULTS.md: the trickle's latency, and the burst of events
against the plain drain, server by server."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.report_cells import DASH, breakdown, line, rate, requests, server_cpu
from benchmarks.results import Row, find
from benchmarks.scenarios import TIMES
from benchmarks.targets import (
    WATCH,
    WATCH_EVENTS,
    WATCH_LISTING,
    WATCH_TRICKLE,
    watch_ratio,
    watch_servers,
)


def _seconds(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f} s"


def _sqs(row: Row) -> str:
    total = row.sqs_requests_per_object
    if total is None or row.watch is None or row.watch.sqs_requests is None:
        return DASH
    ordered = sorted(row.watch.sqs_requests, key=lambda item: (-item[1], item[0]))
    return breakdown(total, [(op, n / row.scenario.count) for op, n in ordered])


def _watch_server_cpu(row: Row) -> str:
    """The S3 server's CPU per request (moto: S3's and SQS's requests together, as it serves
    both), and SQS's own server's where it has one."""
    text = server_cpu(row)
    figures = row.watch
    if figures is None or figures.sqs_server_cpu_seconds is None or not figures.sqs_total:
        return text
    sqs = 1000 * figures.sqs_server_cpu_seconds / figures.sqs_total
    return f"{text}; SQS's moto {sqs:.3f} per SQS request"


def _status(row: Row) -> str:
    return f"{row.status}: {row.note}" if row.note else row.status


def _trickleline(server: str, row: Row) -> str:
    figures = row.watch
    if figures is None:
        return line([server, *[DASH] * 7, _status(row)])
    quantiles = " / ".join(_seconds(figures.latency(q)) for q in (0.5, 0.95, 1.0))
    if figures.missing:
        quantiles += f" ({figures.missing} never in place)"
    left = figures.left_in_queue
    return line(
        [
            server,
            f"{len(figures.latencies) + figures.missing:,}",
            quantiles if figures.latencies else DASH,
            f"{_seconds(figures.own_p50)} / {_seconds(figures.own_p95)}",
            requests(row),
            _sqs(row),
            DASH if left is None else f"{left:,}",
            rate(row.cpu_per_1000_objects),
            _status(row),
        ]
    )


def _burstline(server: str, events: Row, listing: Row | None, ratio: float | None) -> str:
    last = events.watch.last_file_seconds if events.watch else None
    if listing is None:
        plain = DASH
    else:
        plain = rate(listing.objects_per_second) if listing.timed else listing.status
    return line(
        [
            server,
            f"{events.scenario.count:,}",
            rate(events.objects_per_second) if events.timed else events.status,
            _seconds(last) if events.timed else DASH,
            plain,
            f"{ratio:.2f}{TIMES}" if ratio else DASH,
            requests(events),
            _sqs(events),
            _watch_server_cpu(events),
            _status(events),
        ]
    )


def watch_tables(rows: Sequence[Row]) -> str | None:
    """The watch scenario's figures, server by server: the trickle's latency, then the burst of
    events against the plain drain."""
    servers = watch_servers(rows)
    if not servers:
        return None
    latency = [
        "| server | uploads | upload to file: p50 / p95 / max | the watcher's own p50 / p95 "
        "(event to settled) | S3 requests/object | SQS requests/object (by action) | left in "
        "the queue after SIGTERM | watcher CPU s/1,000 obj | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    burst = [
        "| server | objects | `watch --once` objects/s | its last file at | plain drain "
        "objects/s | ratio | S3 requests/object (by type) | SQS requests/object (by action) | "
        "server CPU ms/request (/object) | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for server in servers:
        trickle = find(rows, WATCH, WATCH_TRICKLE, server)
        if trickle is not None:
            latency.append(_trickleline(server, trickle))
        events = find(rows, WATCH, WATCH_EVENTS, server)
        if events is not None:
            listing = find(rows, WATCH, WATCH_LISTING, server)
            burst.append(_burstline(server, events, listing, watch_ratio(rows, server)))
    return "\n".join(
        [
            "Latency: a trickle of uploads while one watcher runs.",
            "",
            *latency,
            "",
            "Throughput: a burst of events, then the same objects listed.",
            "",
            *burst,
        ]
    )
