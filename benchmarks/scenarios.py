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


@dataclass(frozen=True)
class Scenario:
    name: str
    count: int
    size: int
    # Added to every response by a proxy in front of the server (seconds); 0 means direct.
    latency: float = 0.0
    # Every connection goes through this link (a relay process); None means direct.
    link: Link | None = None

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
}

SCENARIO_NAMES = tuple(FULL)
