"""The fan-out rule against simulated servers, in simulated time: it must settle near the best
stream count in each regime (issue 14) — many streams where each connection is capped and a
range costs little, one where every range costs the server a whole object's work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from s3drain.drain.fanout import FanOut
from s3drain.drain.slots import Backlog

MiB = 1024 * 1024
STEP = 0.05  # simulated seconds per step


@dataclass
class Link:
    """Aggregate bytes/s a given number of streams gets; a new stream idles `startup` s."""

    rate: Callable[[int], float]
    startup: float = 0.05


def settle(link: Link, *, seconds: float = 60.0, max_streams: int = 16) -> tuple[int, FanOut]:
    """Drive one endless large object: each step, the streams get their share of the link,
    the fan-out is told, and the object takes as many streams as it wants (it always could)."""
    now = [0.0]
    fanout = FanOut(max_streams, clock=lambda: now[0])
    streams, warming = 1, 0.0
    while now[0] < seconds:
        flowing = link.rate(streams) * STEP * (0.0 if warming > 0 else 1.0)
        fanout.moved(int(flowing))
        warming = max(0.0, warming - STEP)
        want = fanout.wanted(can_grow=streams < max_streams)
        if want > streams:
            warming = link.startup
        streams = want
        now[0] += STEP
    return streams, fanout


def capped(per_stream: float, total: float) -> Callable[[int], float]:
    """A real network: each connection carries at most `per_stream`, the link `total`."""
    return lambda n: min(n * per_stream, total)


def costly(capacity: float, cost: float) -> Callable[[int], float]:
    """A server that reads the whole object for every ranged GET (moto): every extra stream
    takes `cost` of its capacity away from all of them."""
    return lambda n: capacity / (1 + cost * (n - 1))


def test_cheap_ranges_and_capped_streams_settle_on_many_streams() -> None:
    streams, fanout = settle(Link(capped(16 * MiB, 1000 * MiB)))
    assert streams >= 12, fanout.history
    assert fanout.history[-1][1] >= 12 * 16 * MiB  # and it is that fast


def test_costly_ranges_and_uncapped_streams_settle_on_one() -> None:
    streams, fanout = settle(Link(costly(300 * MiB, 0.6)))
    assert streams <= 2, fanout.history
    # It tried, found it did not pay, and spent most of the run at the level that did.
    levels = [level for level, _ in fanout.history]
    assert levels.count(1) >= 0.7 * len(levels), levels


def test_a_link_that_saturates_settles_near_where_it_stops_paying() -> None:
    # 16 MiB/s per connection, 100 MiB/s in all: the best is six or seven streams.
    streams, fanout = settle(Link(capped(16 * MiB, 100 * MiB)))
    assert 5 <= streams <= 9, fanout.history


def test_max_streams_caps_the_level() -> None:
    streams, _ = settle(Link(capped(16 * MiB, 1000 * MiB)), max_streams=4)
    assert streams == 4


@pytest.mark.parametrize("max_streams", [1])
def test_one_stream_never_grows(max_streams: int) -> None:
    streams, fanout = settle(Link(capped(16 * MiB, 1000 * MiB)), max_streams=max_streams)
    assert streams == 1 and all(level == 1 for level, _ in fanout.history)


def test_what_is_learned_carries_over_and_no_growth_is_tried_without_demand() -> None:
    now = [0.0]
    fanout = FanOut(16, clock=lambda: now[0])
    for _ in range(200):  # every connection busy with its own object: nothing can grow
        fanout.moved(10 * MiB)
        assert fanout.wanted(can_grow=False) == 1
        now[0] += STEP
    fanout.level = 6  # learned earlier in the run
    assert fanout.wanted(can_grow=False) == 6  # the next object starts where the run is


def test_the_tail_shares_its_streams_among_the_large_objects_still_streaming() -> None:
    backlog = Backlog()
    with backlog.large():
        assert backlog.floor(4) == 1  # the listing goes on: the fan-out alone decides
        backlog.listed_all.set()
        assert backlog.floor(4) == 4  # the lone large object of the tail
        with backlog.large():
            assert backlog.floor(4) == 2
            backlog.queued()  # an object waits for a worker: not the tail yet
            assert backlog.floor(4) == 1
            backlog.started()
            with backlog.large(), backlog.large(), backlog.large():
                assert backlog.floor(4) == 1  # five large objects need no extra streams
