"""What a watcher counts: where each object came from, what became of it, and how long an
upload waited for its file. Thread-safe; read as a frozen `WatchFigures`."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal

from s3drain.records import Outcome, Status

Source = Literal["event", "reconcile"]
# Upload (the event's eventTime) to the object settled: file placed, object deleted from S3.
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
_KEPT = 10_000  # latencies kept for the percentiles: the most recent


@dataclass(frozen=True)
class WatchFigures:
    found: dict[Source, int]  # objects handed to the pipeline, by what named them
    delivered: dict[Source, int]  # of those, downloaded (a file placed)
    reconcile_passes: int
    filtered: int  # named by an event, left by --include/--exclude/--shard
    merged: int  # an event for an object already in flight: settled with it, no second GET
    latency_buckets: tuple[int, ...]  # cumulative counts per LATENCY_BUCKETS, then +Inf
    latency_sum: float
    latency_count: int
    p50: float | None
    p95: float | None


class WatchStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[Source, int] = {"event": 0, "reconcile": 0}
        self._delivered: dict[Source, int] = {"event": 0, "reconcile": 0}
        self._passes = 0
        self._filtered = 0
        self._merged = 0
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0
        self._recent: deque[float] = deque(maxlen=_KEPT)

    def found(self, source: Source) -> None:
        with self._lock:
            self._found[source] += 1

    def reconciled(self) -> None:
        with self._lock:
            self._passes += 1

    def filtered(self) -> None:
        with self._lock:
            self._filtered += 1

    def merged(self) -> None:
        with self._lock:
            self._merged += 1

    def settled(self, outcome: Outcome, source: Source, latency: float | None) -> None:
        if outcome.status is not Status.DOWNLOADED:
            return
        with self._lock:
            self._delivered[source] += 1
            if latency is None:
                return
            latency = max(0.0, latency)
            index = next(
                (i for i, bound in enumerate(LATENCY_BUCKETS) if latency <= bound),
                len(LATENCY_BUCKETS),
            )
            self._buckets[index] += 1
            self._sum += latency
            self._recent.append(latency)

    def figures(self) -> WatchFigures:
        with self._lock:
            cumulative: list[int] = []
            running = 0
            for count in self._buckets:
                running += count
                cumulative.append(running)
            ordered = sorted(self._recent)
            return WatchFigures(
                found=dict(self._found),
                delivered=dict(self._delivered),
                reconcile_passes=self._passes,
                filtered=self._filtered,
                merged=self._merged,
                latency_buckets=tuple(cumulative),
                latency_sum=self._sum,
                latency_count=running,
                p50=_percentile(ordered, 0.50),
                p95=_percentile(ordered, 0.95),
            )


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
