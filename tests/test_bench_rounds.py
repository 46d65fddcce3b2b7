"""The bench takes repeated runs in rounds: one run of each contender per round, so that a
spell of slowness on this machine cannot land on one contender's runs alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from benchmarks.bench import ServerBench
from benchmarks.config import BenchConfig
from benchmarks.contenders import NAIVE, S3DRAIN, Contender
from benchmarks.dataset import ObjectSpec
from benchmarks.results import NOT_INSTALLED, OK, Row
from benchmarks.scenarios import SMOKE, Scenario
from benchmarks.servers import Backend

MISSING = dataclasses.replace(NAIVE, name="absent")


def _bench(tmp_path: Path, repeat_big: int) -> tuple[ServerBench, list[str]]:
    config = BenchConfig(
        scenarios=(SMOKE["large"],),
        contenders=(S3DRAIN, MISSING, NAIVE),
        workdir=tmp_path,
        repeat=1,
        repeat_big=repeat_big,
    )
    backend = cast(Backend, SimpleNamespace(name="fake"))
    bench = ServerBench(config, backend, tmp_path, path="")
    bench.located = {"s3drain": "/s3drain", "absent": None, "naive": "/naive"}
    calls: list[str] = []

    def trial(scenario: Scenario, contender: Contender, exe: str, prefix: str, objects: Any) -> Row:
        calls.append(contender.name)
        # Each contender's runs get slower, so the median is the middle one.
        seconds = float(len([c for c in calls if c == contender.name]))
        return Row(scenario, contender.name, OK, server="fake", seconds=seconds, cpu_seconds=1.0)

    bench.trial = trial  # type: ignore[method-assign]
    return bench, calls


def _rows(bench: ServerBench, wanted: Sequence[Contender]) -> list[Row]:
    objects: tuple[ObjectSpec, ...] = ()
    return bench.contenders(SMOKE["large"], wanted, "bench/large/", objects)


def test_runs_alternate_between_contenders_round_by_round(tmp_path: Path) -> None:
    bench, calls = _bench(tmp_path, repeat_big=3)
    rows = _rows(bench, (S3DRAIN, MISSING, NAIVE))
    assert calls == ["s3drain", "naive"] * 3
    assert [(r.contender, r.status) for r in rows] == [
        ("s3drain", OK),
        ("absent", NOT_INSTALLED),
        ("naive", OK),
    ]
    for row in (rows[0], rows[2]):
        assert row.seconds == pytest.approx(2.0)  # the median of 1, 2 and 3 s
        assert "median of 3 runs: 1.00 to 3.00 s" in row.note


def test_a_single_run_is_one_trial_each(tmp_path: Path) -> None:
    bench, calls = _bench(tmp_path, repeat_big=1)
    rows = _rows(bench, (NAIVE, S3DRAIN))
    assert calls == ["naive", "s3drain"]
    assert [r.contender for r in rows] == ["naive", "s3drain"]
    assert all(r.seconds == 1.0 for r in rows)
