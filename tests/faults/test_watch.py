"""The watch scenario at CI size (`make chaos` runs more): `s3drain watch` killed -9 at a random
moment while objects arrive, then `watch --once` to finish; the invariant after the kill and
after each finishing run, an empty queue, and no message deleted for an object still in S3
without a reason in the audit log (`watching.py`). About 20 s a trial: most of it is waiting
for the messages the dead watcher held to come back (a 10 s visibility timeout)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.faults.scenarios import Bench, bench_on
from tests.faults.watching import watch_trial
from tests.support.server import MotoServer

SEED = int(os.environ.get("S3DRAIN_CHAOS_SEED", "7000"))
WATCH_TRIALS = 4


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


@pytest.mark.parametrize("seed", range(SEED, SEED + WATCH_TRIALS))
def test_watcher_killed_9_while_objects_arrive(bench: Bench, seed: int) -> None:
    report = watch_trial(bench, seed)
    assert not report.violations, report.describe()
