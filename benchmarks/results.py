"""Rows of the results table: one per scenario and contender, plus the server's ceiling."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from benchmarks.scenarios import GIB, MIB, Scenario

OK = "ok"
WRONG = "wrong"
FAILED = "failed"
TIMEOUT = "timeout"
NOT_INSTALLED = "not installed"
SKIPPED = "skipped"
CEILING = "ceiling"
CEILING_NAME = "server ceiling"
# The peers of issue 19's targets: the tools an ETL team would otherwise pick.
PEERS = ("rclone", "s5cmd")


@dataclass(frozen=True)
class WatchFigures:
    """What a run of the `watch` scenario measured besides a run's own figures."""

    # The watcher's SQS requests by action (ReceiveMessage, DeleteMessageBatch, ...), counted
    # at the SQS server; None when nobody could count them.
    sqs_requests: tuple[tuple[str, int], ...] | None = None
    # SQS is served by the S3 server's process (moto): its CPU is the two services' together.
    sqs_on_s3_server: bool = False
    # CPU seconds of SQS's own server during the run, where it is not the S3 server.
    sqs_server_cpu_seconds: float | None = None
    # The trickle: seconds from the end of each upload (its PUT answered, and where the bench
    # sends the event, before that) to its file in place under raw/; objects never seen there.
    latencies: tuple[float, ...] = ()
    missing: int = 0
    # The burst: seconds from the watcher's start to the last file it wrote (its mtime): the
    # end of its wall time past that is the wait for its last deletes and a quiet queue.
    last_file_seconds: float | None = None
    # The watcher's own figure (its --json summary): event time to the object settled
    # (placed, verified, deleted from S3), p50 and p95.
    own_p50: float | None = None
    own_p95: float | None = None
    # Messages the watcher received, by its summary.
    messages: int | None = None
    # Messages still in the queue after the watcher exited (the trickle's SIGTERM).
    left_in_queue: int | None = None

    def latency(self, q: float) -> float | None:
        """The ``q`` quantile of the latencies (nearest rank)."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    @property
    def sqs_total(self) -> int | None:
        return None if self.sqs_requests is None else sum(n for _, n in self.sqs_requests)


@dataclass(frozen=True)
class Row:
    scenario: Scenario
    contender: str
    status: str
    # The server's short name (moto-aws-like, moto, seaweedfs, external).
    server: str = ""
    # The cores the contender was pinned to (the scaling scenario); None: not pinned.
    cpus: str | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None
    # Requests the server saw during the run, by S3 operation; None when nobody could count.
    requests: tuple[tuple[str, int], ...] | None = None
    note: str = ""
    # CPU seconds of the wan scenarios' link relay during the run (its own process, not the
    # contender's), to show it was not the bottleneck.
    relay_cpu_seconds: float | None = None
    # How many runs the figures are the median of.
    runs: int = 1
    # The largest sum of the contender's process tree's memory at one moment (Pss), and how
    # many processes it had; peak_rss_bytes is the largest of any one of them.
    peak_rss_sum_bytes: int | None = None
    processes: int = 1
    # CPU seconds the server process spent during the run, to show it was not the limit.
    server_cpu_seconds: float | None = None
    # The `watch` scenario's own figures (latency, SQS requests); None in every other row.
    watch: WatchFigures | None = None
    # How long a sync(2) right after the contender's exit took: the writing it left to the
    # kernel. None where nothing was timed (the ceiling, a failed run).
    sync_seconds: float | None = None

    @property
    def label(self) -> str:
        """The contender, and where it was pinned."""
        if self.cpus is None:
            return self.contender
        cores = "cores" if "-" in self.cpus or "," in self.cpus else "core"
        return f"{self.contender} ({cores} {self.cpus})"

    @property
    def timed(self) -> bool:
        """Only a verified result (or the ceiling) has a speed worth reporting."""
        return self.status in (OK, CEILING) and self.seconds is not None and self.seconds > 0

    @property
    def objects_per_second(self) -> float | None:
        return self.scenario.count / self.seconds if self.timed and self.seconds else None

    @property
    def mib_per_second(self) -> float | None:
        if not self.timed or not self.seconds:
            return None
        return self.scenario.total_bytes / MIB / self.seconds

    @property
    def on_disk_seconds(self) -> float | None:
        """Wall time until every byte is on disk: the run, then the sync after it."""
        if not self.timed or self.seconds is None or self.sync_seconds is None:
            return None
        return self.seconds + self.sync_seconds

    @property
    def on_disk_rate(self) -> float | None:
        """Objects/s (small objects) or MiB/s (big ones) until every byte is on disk."""
        seconds = self.on_disk_seconds
        if not seconds:
            return None
        work = (
            self.scenario.count if self.scenario.small_objects else self.scenario.total_bytes / MIB
        )
        return work / seconds

    @property
    def requests_per_object(self) -> float | None:
        if self.requests is None:
            return None
        return sum(n for _, n in self.requests) / self.scenario.count

    def requests_by_type(self) -> list[tuple[str, float]]:
        """Per object, most frequent first."""
        if self.requests is None:
            return []
        ordered = sorted(self.requests, key=lambda item: (-item[1], item[0]))
        return [(op, n / self.scenario.count) for op, n in ordered]

    @property
    def cpu_per_1000_objects(self) -> float | None:
        if self.cpu_seconds is None or self.status != OK:
            return None
        return self.cpu_seconds / self.scenario.count * 1000

    @property
    def cpu_per_gib(self) -> float | None:
        """CPU seconds per GiB drained; only where bytes, not objects, are the work."""
        if self.cpu_seconds is None or self.status != OK or self.scenario.small_objects:
            return None
        return self.cpu_seconds / (self.scenario.total_bytes / GIB)

    @property
    def peak_rss_mib(self) -> float | None:
        if self.peak_rss_bytes is None or self.status != OK:
            return None
        return self.peak_rss_bytes / MIB

    @property
    def peak_rss_sum_mib(self) -> float | None:
        if self.peak_rss_sum_bytes is None or self.status != OK:
            return None
        return self.peak_rss_sum_bytes / MIB

    @property
    def sqs_requests_per_object(self) -> float | None:
        total = self.watch.sqs_total if self.watch else None
        return None if total is None else total / self.scenario.count

    @property
    def server_ms_per_request(self) -> float | None:
        total = sum(n for _, n in self.requests) if self.requests else 0
        if self.watch is not None and self.watch.sqs_on_s3_server:
            total += self.watch.sqs_total or 0  # moto served both: its CPU is for both
        if self.server_cpu_seconds is None or not total:
            return None
        return 1000 * self.server_cpu_seconds / total

    @property
    def server_ms_per_object(self) -> float | None:
        if self.server_cpu_seconds is None:
            return None
        return 1000 * self.server_cpu_seconds / self.scenario.count


def request_counts(counts: Counter[str] | None) -> tuple[tuple[str, int], ...] | None:
    return None if counts is None else tuple(sorted(counts.items()))


def _median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def aggregate(trials: Sequence[Row]) -> Row:
    """One row for repeated runs: the median of each figure, but the worst peak RSS.

    Wall time, CPU and the relay's CPU are each the median over the runs; the requests are
    those of the run with the median wall time (they hardly vary). Peak RSS is the largest
    seen, as it is checked against a budget. Any trial that is not ok makes the row not ok: a
    tool that is right only sometimes is wrong.
    """
    bad = [trial for trial in trials if trial.status != OK]
    if bad:
        note = bad[0].note
        if len(trials) > 1:
            note = f"{len(bad)} of {len(trials)} runs not ok; {note}"
        return replace(bad[0], note=note)
    if len(trials) == 1:
        return trials[0]
    ordered = sorted(trials, key=lambda trial: trial.seconds or 0.0)
    median = ordered[len(ordered) // 2]
    cpus = sorted(trial.cpu_seconds or 0.0 for trial in trials)
    spread = (
        f"median of {len(trials)} runs: {ordered[0].seconds:.2f} to {ordered[-1].seconds:.2f} s, "
        f"{cpus[0]:.2f} to {cpus[-1]:.2f} CPU-s"
    )
    return replace(
        median,
        seconds=_median([trial.seconds for trial in trials]),
        cpu_seconds=statistics.median(cpus),
        peak_rss_bytes=max(trial.peak_rss_bytes or 0 for trial in trials),
        peak_rss_sum_bytes=max(trial.peak_rss_sum_bytes or 0 for trial in trials),
        processes=max(trial.processes for trial in trials),
        relay_cpu_seconds=_median([trial.relay_cpu_seconds for trial in trials]),
        server_cpu_seconds=_median([trial.server_cpu_seconds for trial in trials]),
        sync_seconds=_median([trial.sync_seconds for trial in trials]),
        runs=len(trials),
        note=spread,
    )


def best_peer(
    rows: Sequence[Row],
    scenario: str,
    server: str,
    peers: Sequence[str] = PEERS,
    *,
    on_disk: bool = False,
) -> Row | None:
    """The fastest verified peer of ``scenario`` on ``server`` (not pinned); ``on_disk``:
    the fastest until its bytes were on disk (wall time plus the sync after)."""
    candidates = [
        row
        for row in rows
        if row.scenario.name == scenario
        and row.server == server
        and row.status == OK
        and row.contender in peers
        and row.cpus is None
        and row.seconds is not None
    ]
    if on_disk:
        candidates = [row for row in candidates if row.on_disk_seconds is not None]
        return min(candidates, key=lambda row: row.on_disk_seconds or 0.0, default=None)
    return min(candidates, key=lambda row: row.seconds or 0.0, default=None)


def find(
    rows: Sequence[Row], scenario: str, contender: str, server: str, cpus: str | None = None
) -> Row | None:
    return next(
        (
            row
            for row in rows
            if row.scenario.name == scenario
            and row.contender == contender
            and row.server == server
            and row.cpus == cpus
        ),
        None,
    )
