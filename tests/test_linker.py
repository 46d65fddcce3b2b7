"""The linker: fetched temp files are staged in the ledger a batch per commit, then named."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from s3drain.drain.linker import Fetched, Linker
from s3drain.drain.transfer import sweep_temp_files
from s3drain.drain.verify import Verified
from s3drain.errors import S3DrainError
from s3drain.local.fs import LocalFS
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_db import ledger_path
from s3drain.local.paths import temp_name_for
from s3drain.records import ObjectRecord, Outcome, Status

WHEN = datetime(2026, 11, 1, tzinfo=UTC)


class Seen:
    def __init__(self) -> None:
        self.linked: list[Outcome] = []
        self.recorded: list[Outcome] = []
        self.fatal: list[S3DrainError] = []
        self.crashed: list[str] = []
        self._lock = threading.Lock()

    def linker(
        self, fs: LocalFS, ledger: Ledger, *, window: float, max_waiting: int = 256
    ) -> Linker:
        return Linker(
            fs,
            ledger,
            linked=self._into(self.linked),
            record=self._into(self.recorded),
            fatal=self.fatal.append,
            crashed=lambda exc, where: self.crashed.append(where),
            window=window,
            max_waiting=max_waiting,
        )

    def _into(self, outcomes: list[Outcome]) -> Callable[[Outcome], None]:
        def put(outcome: Outcome) -> None:
            with self._lock:
                outcomes.append(outcome)

        return put


def fetched(fs: LocalFS, raw: Path, key: str, body: bytes = b"abc") -> Fetched:
    target = str(raw / key)
    temp = temp_name_for(target, key, "e" * 32)
    fd = fs.create_temp(temp)
    fs.write(fd, body)
    fs.fsync(fd)
    record = ObjectRecord(key=key, size=len(body), etag="e" * 32, last_modified=WHEN)
    return Fetched(record, fd, temp, target, fs.file_id(fd), Verified("md5", "md5:e", None))


def opened(tmp_path: Path) -> Ledger:
    (tmp_path / ".s3drain").mkdir(exist_ok=True)
    ledger = Ledger.open(tmp_path / ".s3drain", tmp_path)
    ledger.begin_run("20261101T000000Z", "lake", "")
    return ledger


def rows(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(ledger_path(tmp_path / ".s3drain")) as conn:
        return list(conn.execute("SELECT key, state FROM deliveries ORDER BY key"))


def test_many_files_one_commit_each_named_after_its_row(tmp_path: Path) -> None:
    fs, raw, seen = LocalFS(), tmp_path / "raw", Seen()
    raw.mkdir()
    with opened(tmp_path) as ledger:
        before = ledger.commits
        linker = seen.linker(fs, ledger, window=30.0)  # only the close flushes
        for n in range(40):
            linker.submit(fetched(fs, raw, f"k{n:02}"))
        assert not any(p.name.startswith("k") for p in raw.iterdir())  # no name before its row
        linker.close()
        assert ledger.commits - before == 1
    assert sorted(p.name for p in raw.iterdir()) == [f"k{n:02}" for n in range(40)]
    assert rows(tmp_path) == [(f"k{n:02}", "staged") for n in range(40)]
    assert [o.status for o in seen.linked] == [Status.DOWNLOADED] * 40
    assert all(o.delivery_id and o.local_path for o in seen.linked)
    assert seen.recorded == [] and seen.fatal == [] and seen.crashed == []


def test_a_full_batch_is_flushed_without_waiting_for_the_window(tmp_path: Path) -> None:
    fs, raw, seen = LocalFS(), tmp_path / "raw", Seen()
    raw.mkdir()
    with opened(tmp_path) as ledger:
        linker = seen.linker(fs, ledger, window=30.0, max_waiting=4)
        for n in range(8):
            linker.submit(fetched(fs, raw, f"k{n}"))
        deadline = 50
        while len(seen.linked) < 8 and deadline:
            threading.Event().wait(0.1)
            deadline -= 1
        assert len(seen.linked) == 8  # two full batches, long before the 30 s window
        linker.close()


def test_a_name_taken_meanwhile_is_a_conflict_and_its_row_goes(tmp_path: Path) -> None:
    fs, raw, seen = LocalFS(), tmp_path / "raw", Seen()
    raw.mkdir()
    with opened(tmp_path) as ledger:
        linker = seen.linker(fs, ledger, window=30.0)
        linker.submit(fetched(fs, raw, "a"))
        linker.submit(fetched(fs, raw, "b"))
        linker.submit(fetched(fs, raw, "c"))
        (raw / "a").write_bytes(b"the ETL's own file")
        (raw / "c").mkdir()  # `c/d` was fetched first and made the folder
        linker.close()
    assert (raw / "a").read_bytes() == b"the ETL's own file"  # never replaced
    assert [o.record.key for o in seen.linked] == ["b"]
    conflict, refused = seen.recorded
    assert conflict.status is Status.CONFLICT and conflict.record.key == "a"
    assert refused.status is Status.REFUSED and "folder is in the way" in refused.detail
    assert rows(tmp_path) == [("b", "staged")]
    assert sorted(os.listdir(raw)) == ["a", "b", "c"]  # no temp file left behind
    assert os.listdir(raw / "c") == []


def test_a_ledger_that_cannot_record_stops_the_run_and_names_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, raw, seen = LocalFS(), tmp_path / "raw", Seen()
    raw.mkdir()
    with opened(tmp_path) as ledger:

        def full(rows: object) -> list[int]:
            raise S3DrainError("the ledger's disk is full")

        monkeypatch.setattr(ledger, "stage_many", full)
        linker = seen.linker(fs, ledger, window=30.0, max_waiting=2)
        for n in range(4):
            linker.submit(fetched(fs, raw, f"k{n}"))
        linker.close()
    assert os.listdir(raw) == []  # neither names nor temp files
    assert seen.linked == [] and len(seen.fatal) == 1
    assert [o.status for o in seen.recorded] == [Status.FAILED] * 4
    assert all("not" in o.detail for o in seen.recorded)


def test_a_bug_in_the_linker_gives_every_object_its_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, raw, seen = LocalFS(), tmp_path / "raw", Seen()
    raw.mkdir()
    with opened(tmp_path) as ledger:
        calls = 0
        real = fs.link_into_place

        def broken(temp: str, target: str) -> None:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise RuntimeError("bug")
            real(temp, target)

        closes: list[int] = []
        close = fs.close

        def counted(fd: int) -> None:
            closes.append(fd)
            close(fd)

        monkeypatch.setattr(fs, "link_into_place", broken)
        monkeypatch.setattr(fs, "close", counted)
        linker = seen.linker(fs, ledger, window=30.0, max_waiting=3)
        for n in range(6):
            linker.submit(fetched(fs, raw, f"k{n}"))
        linker.close()
    assert seen.crashed == ["the linker"]
    assert [o.record.key for o in seen.linked] == ["k0"]
    assert sorted(o.record.key for o in seen.recorded) == [f"k{n}" for n in range(1, 6)]
    assert all(o.status is Status.FAILED for o in seen.recorded)
    assert os.listdir(raw) == ["k0"]
    # Each descriptor closed once: a second close could hit a number another thread reopened.
    assert len(closes) == 6 and len(set(closes)) <= 6


def test_a_killed_run_leaves_only_temp_files_the_next_sweep_takes(tmp_path: Path) -> None:
    # Killed after the fetch, before the linker's commit: the temp file is complete but has
    # no name and no row. While its run lives it is locked; once the run is gone, swept.
    fs, raw = LocalFS(), tmp_path / "raw"
    raw.mkdir()
    item = fetched(fs, raw, "a")
    assert sweep_temp_files(str(raw), LocalFS()) == 0  # locked by the live run
    fs.close(item.fd)  # what the kernel does when the process dies
    assert sweep_temp_files(str(raw), LocalFS()) == 1
    assert os.listdir(raw) == []


def test_a_temp_file_is_created_empty_and_locked(tmp_path: Path) -> None:
    fs, path = LocalFS(), str(tmp_path / ".s3drain-new.part")
    fd = fs.create_temp(path)
    try:
        assert os.fstat(fd).st_size == 0
        assert not fs.remove_if_unlocked(path)  # locked: another run's sweep leaves it
    finally:
        fs.close(fd)


def test_a_temp_file_a_killed_run_left_is_taken_over_and_emptied(tmp_path: Path) -> None:
    fs, path = LocalFS(), tmp_path / ".s3drain-left.part"
    path.write_bytes(b"half an object")
    fd = fs.create_temp(str(path))
    try:
        assert os.fstat(fd).st_size == 0 and path.read_bytes() == b""
    finally:
        fs.close(fd)


def test_a_temp_file_another_run_holds_is_left_as_it_is(tmp_path: Path) -> None:
    fs, path = LocalFS(), tmp_path / ".s3drain-busy.part"
    held = fs.create_temp(str(path))
    fs.write(held, b"being written")
    try:
        with pytest.raises(BlockingIOError):
            fs.create_temp(str(path))
        assert path.read_bytes() == b"being written"
    finally:
        fs.close(held)
