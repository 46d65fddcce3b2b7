"""The watch scenario at CI size (`make chaos` runs more): `s3drain watch` killed -9 at a random
moment while objects arrive, then `watch --once` to finish; the invariant after the kill and
after each finishing run, an empty queue, and no message deleted for an object still in S3
without a reason in the audit log (`watching.py`). About 20 s a trial, most of it waiting:
for the messages the dead watcher held to come back (a 10 s visibility timeout), for the
watcher's delete batches (5 s) and its --once quiet poll. So the trials run two at a time,
each on its own bucket, queue and base path: about 50 s for the four."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from tests.faults.scenarios import AWS_LIKE, MOTO, Bench, TrialReport, bench_on
from tests.faults.watching import watch_trial
from tests.support.server import MotoServer

SEED = int(os.environ.get("S3DRAIN_CHAOS_SEED", "7000"))
AT_ONCE = 2
# Seed, server, whether the first finishing run starts slowly: both servers, and the slow start
# that once ended --once before its first receive (watch/feed.py), each twice.
TRIALS = (
    (SEED, MOTO, False),
    (SEED + 1, AWS_LIKE, False),
    (SEED + 2, MOTO, True),
    (SEED + 3, AWS_LIKE, True),
)


@pytest.fixture(scope="module")
def bench(
    moto_server: MotoServer,
    aws_like_moto_server: MotoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Bench]:
    with bench_on(
        moto_server.url, tmp_path_factory.mktemp("watch"), aws_url=aws_like_moto_server.url
    ) as shared:
        yield shared


@pytest.fixture(scope="module")
def trials(bench: Bench) -> Iterator[dict[int, Future[TrialReport]]]:
    with ThreadPoolExecutor(AT_ONCE, thread_name_prefix="watch-trial") as pool:
        yield {
            seed: pool.submit(watch_trial, bench, seed, server=server, slow_start=slow)
            for seed, server, slow in TRIALS
        }


@pytest.mark.parametrize(("seed", "server", "slow_start"), TRIALS)
def test_watcher_killed_9_while_objects_arrive(
    trials: dict[int, Future[TrialReport]], seed: int, server: str, slow_start: bool
) -> None:
    report = trials[seed].result()
    assert not report.violations, report.describe()
    assert report.notes[f"server {server}"] == 1
    assert report.notes["finishing runs with a slow start"] == int(slow_start)
    # Nothing else consumes the queue, and the heartbeat beats every 2.5 s for a 10 s timeout:
    # a lost visibility is a false alarm (a beat that crossed a delete once counted as one).
    assert report.notes["finishing run: messages visibility_lost"] == 0, report.describe()
