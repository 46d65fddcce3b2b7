"""What gets drained: the object counts and sizes of each scenario, full size and smoke size."""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIMES = "\N{MULTIPLICATION SIGN}"

# How many folders the keys of a scenario are spread over: drains create folders too, and a
# real prefix is rarely flat.
FOLDERS = 20


@dataclass(frozen=True)
class Link:
    """A slow link between every client and the server (see benchmarks/wan.py)."""

    delay: float  # seconds, each way
    rate: int  # bytes per second per connection, server to client

    @property
    def title(self) -> str:
        return (
            f"{2 * self.delay * 1000:.0f} ms round trip, {_size_text(self.rate)}/s per connection"
        )


# What a client far from its S3 region sees: a 20 ms round trip, and each TCP connection
# capped at 16 MiB/s, so a tool's number of connections decides its speed on big objects.
WAN = Link(delay=0.010, rate=16 * MIB)
# What an ETL host in the cloud sees of S3 in its region: a 25 ms round trip (first-byte
# latency of a small GET), and about 90 MiB/s per connection.
CLOUD = Link(delay=0.0125, rate=90 * MIB)


@dataclass(frozen=True)
class Trickle:
    """The `watch` scenario's steady uploads while one watcher runs (benchmarks/watch.py)."""

    rate: float  # objects per second
    seconds: float

    @property
    def count(self) -> int:
        return max(1, round(self.rate * self.seconds))


@dataclass(frozen=True)
class Scenario:
    name: str
    count: int
    size: int
    # Added to every response by a proxy in front of the server (seconds); 0 means direct.
    latency: float = 0.0
    # Every connection goes through this link (a relay process); None means direct.
    link: Link | None = None
    # Runs on a server pinned to core 0, each contender pinned to core 1 and then to cores
    # 0-1: how a drain grows from one core to two.
    scaling: bool = False
    # `s3drain watch` on S3's event notifications (benchmarks/watch.py): a trickle of uploads
    # of ``size`` while one watcher runs (latency), then the ``count`` objects as a burst of
    # events drained by `watch --once` and by a plain drain (throughput).
    trickle: Trickle | None = None

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    @property
    def title(self) -> str:
        text = f"{self.count:,} {TIMES} {_size_text(self.size)}"
        if self.latency:
            text += f", +{self.latency * 1000:.0f} ms per response"
        if self.link:
            text += f", over a link of {self.link.title}"
        if self.scaling:
            text += ", server on core 0, the drain on core 1 and then on cores 0-1"
        if self.trickle:
            text = (
                f"a trickle of {self.trickle.rate:g}/s {TIMES} {_size_text(self.size)} for "
                f"{self.trickle.seconds:g} s while `s3drain watch` runs (upload to file), then "
                f"{text} as a burst of S3 events: `s3drain watch --once` against a plain drain"
            )
        return text

    @property
    def small_objects(self) -> bool:
        """Whether the scenario is about objects per second rather than bytes per second."""
        return self.size < MIB


def _size_text(size: int) -> str:
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


FULL: dict[str, Scenario] = {
    "small": Scenario("small", 2000, 4 * KIB),
    "large": Scenario("large", 20, 64 * MIB),
    "huge": Scenario("huge", 1, 1 * GIB),
    "latency": Scenario("latency", 2000, 4 * KIB, latency=0.02),
    "large-wan": Scenario("large-wan", 20, 64 * MIB, link=WAN),
    "huge-wan": Scenario("huge-wan", 1, 1 * GIB, link=WAN),
    "small-cloud": Scenario("small-cloud", 2000, 4 * KIB, link=CLOUD),
    "large-cloud": Scenario("large-cloud", 20, 64 * MIB, link=CLOUD),
    "huge-cloud": Scenario("huge-cloud", 1, 1 * GIB, link=CLOUD),
    "scaling": Scenario("scaling", 2000, 4 * KIB, scaling=True),
    "watch": Scenario("watch", 2000, 4 * KIB, trickle=Trickle(rate=10.0, seconds=60.0)),
}

# Tiny, so the whole smoke run takes seconds; "huge" still crosses s3drain's default 16 MiB
# multipart threshold so its ranged path runs.
SMOKE: dict[str, Scenario] = {
    "small": Scenario("small", 50, 4 * KIB),
    "large": Scenario("large", 2, 2 * MIB),
    "huge": Scenario("huge", 1, 24 * MIB),
    "latency": Scenario("latency", 50, 4 * KIB, latency=0.02),
    "large-wan": Scenario("large-wan", 2, 2 * MIB, link=WAN),
    "huge-wan": Scenario("huge-wan", 1, 24 * MIB, link=WAN),
    "small-cloud": Scenario("small-cloud", 50, 4 * KIB, link=CLOUD),
    "large-cloud": Scenario("large-cloud", 2, 2 * MIB, link=CLOUD),
    "huge-cloud": Scenario("huge-cloud", 1, 24 * MIB, link=CLOUD),
    "scaling": Scenario("scaling", 50, 4 * KIB, scaling=True),
    "watch": Scenario("watch", 20, 4 * KIB, trickle=Trickle(rate=4.0, seconds=5.0)),
}

SCENARIO_NAMES = tuple(FULL)

# Which scenarios run on which server. moto keeps what it models (a server that is the limit,
# and the 16 MiB/s wan link of the last rounds); the fast server gets the `cloud` link and the
# scaling runs, which on moto would measure moto.
# `watch` runs on both: on moto S3 itself sends the events to moto's SQS; on SeaweedFS the bench
# sends them, to a moto of its own that serves SQS only.
MOTO_SCENARIOS = ("small", "large", "huge", "latency", "large-wan", "huge-wan", "watch")
FAST_SCENARIOS = (
    *("small", "large", "huge", "small-cloud", "large-cloud", "huge-cloud", "scaling"),
    "watch",
)
# The in-memory endpoint costs less per request than any contender: the small-object scenarios,
# where the server's cost per request decides. Big objects stay on SeaweedFS (asyncio would copy
# what the socket does not take at once).
MEMORY_SCENARIOS = ("small", "small-cloud", "scaling")
SERVER_SCENARIOS: dict[str, tuple[str, ...]] = {
    "moto-aws-like": MOTO_SCENARIOS,
    "moto": MOTO_SCENARIOS,
    "seaweedfs": FAST_SCENARIOS,
    "memory": MEMORY_SCENARIOS,
    # Nothing to pin on a server we did not start, and no SQS beside it.
    "external": tuple(name for name in SCENARIO_NAMES if name not in ("scaling", "watch")),
}
SERVER_NAMES = ("moto-aws-like", "moto", "seaweedfs", "memory")
# `make bench-smoke` keeps to about two minutes: each path of the harness once (both servers, a
# link relay and ranged GETs on each, the pinned server, the watcher on moto's events and on
# the bench's), not every scenario. The latency proxy is in tests/test_bench_smoke.py.
SMOKE_SCENARIO_NAMES = ("small", "huge-wan", "huge-cloud", "scaling", "watch")
DEFAULT_SERVERS = ("moto-aws-like", "seaweedfs", "memory")
