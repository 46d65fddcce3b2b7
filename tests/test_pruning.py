"""The ledger's pruner while a run goes on (a watcher runs for months): old rows go every
period, rows still owed an audit line stay, the close is prompt, and a ledger that cannot be
written, or a bug, stops the run instead of going unnoticed."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from s3drain.drain.pruning import Pruner
from s3drain.errors import S3DrainError
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_db import ledger_path
from tests.test_ledger import new, opened

KEYS = ["exports/old", "exports/owed", "exports/recent"]


def _settled_long_ago(tmp_path: Path, ids: list[int]) -> None:
    with sqlite3.connect(ledger_path(tmp_path / ".s3drain")) as conn:
        conn.executemany(
            "UPDATE deliveries SET settled_at = 1000 WHERE id = ?", [(i,) for i in ids]
        )


def _fill(tmp_path: Path, ledger: Ledger) -> None:
    old, owed, recent = (ledger.stage_many([new(key)])[0] for key in KEYS)
    # `owed`'s delete is sent and answered, its audit line not yet written.
    ledger.deliver(staged=[old, owed, recent], adopted=[], sending=[owed], adopted_sending=False)
    ledger.settle([(old, "deleted"), (owed, "deleted"), (recent, "deleted")])
    _settled_long_ago(tmp_path, [old, owed])


def test_a_running_pruner_forgets_old_rows_and_keeps_those_owed_a_line(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    with opened(tmp_path) as ledger:
        _fill(tmp_path, ledger)
        pruner = Pruner(
            ledger,
            86400,
            fatal=failures.append,
            crashed=lambda exc, _: failures.append(exc),
            every=0.05,
        )
        deadline = time.monotonic() + 5
        while pruner.pruned == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        pruner.close()
        assert pruner.pruned == 1
        assert sorted(ledger.lookup("lake", KEYS)) == ["exports/owed", "exports/recent"]
    assert failures == []


def test_the_close_does_not_wait_for_the_next_period(tmp_path: Path) -> None:
    with opened(tmp_path) as ledger:
        pruner = Pruner(ledger, 86400, fatal=lambda _: None, crashed=lambda *_: None)
        started = time.monotonic()
        pruner.close()
        assert time.monotonic() - started < 1
        assert pruner.pruned == 0


class _Broken:
    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    def prune(self, older_than: float) -> int:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize("error", [S3DrainError("the disk is full"), ValueError("a bug")])
def test_a_failed_prune_stops_the_run_once(error: BaseException) -> None:
    fatal: list[S3DrainError] = []
    crashed: list[tuple[BaseException, str]] = []
    ledger = _Broken(error)
    pruner = Pruner(
        ledger,  # type: ignore[arg-type]
        86400,
        fatal=fatal.append,
        crashed=lambda exc, where: crashed.append((exc, where)),
        every=0.01,
    )
    deadline = time.monotonic() + 5
    while not (fatal or crashed) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # it does not try again
    pruner.close()
    assert ledger.calls == 1
    if isinstance(error, S3DrainError):
        assert fatal == [error] and crashed == []
    else:
        assert fatal == [] and crashed == [(error, "the ledger's pruner")]
