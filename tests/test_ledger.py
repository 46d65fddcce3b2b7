"""The ledger on its own: created with its schema, rows through their states, group commits,
pruning, and every way it can be unusable (damaged, locked, from a newer s3drain, a full disk),
each a clear error that changes nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from s3drain.errors import ConfigError, ExitCode, LockHeldError
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_db import SCHEMA_VERSION, ledger_path
from s3drain.local.ledger_rows import NewDelivery
from s3drain.records import FileId, ObjectRecord

WHEN = datetime(2026, 11, 1, tzinfo=UTC)


def new(key: str, etag: str = "e" * 32, path: str = "/base/raw/x") -> NewDelivery:
    record = ObjectRecord(key=key, size=3, etag=etag, last_modified=WHEN)
    return NewDelivery(record, path, FileId(1, 2, 3, 4), f"md5:{etag}", "md5", "downloaded")


def opened(tmp_path: Path) -> Ledger:
    state = tmp_path / ".s3drain"
    state.mkdir(exist_ok=True)
    ledger = Ledger.open(state, tmp_path)
    ledger.begin_run("20261101T000000Z", "lake", "exports/")
    return ledger


def raw_rows(tmp_path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(ledger_path(tmp_path / ".s3drain")) as conn:
        return list(
            conn.execute(
                "SELECT key, state, delete_state, audited, path FROM deliveries ORDER BY id"
            )
        )


def test_created_on_first_use_with_schema_wal_and_durable_commits(tmp_path: Path) -> None:
    with opened(tmp_path) as ledger:
        assert ledger.created
    with sqlite3.connect(ledger_path(tmp_path / ".s3drain")) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Ledger.open(tmp_path / ".s3drain", tmp_path) as again:
        assert not again.created


def test_a_row_goes_staged_delivered_sending_deleted_audited(tmp_path: Path) -> None:
    with opened(tmp_path) as ledger:
        row = ledger.stage_many([new("exports/a", path=str(tmp_path / "raw" / "a"))])[0]
        assert raw_rows(tmp_path) == [("exports/a", "staged", None, 1, "raw/a")]
        ledger.deliver(staged=[row], adopted=[], sending=[row], adopted_sending=False)
        assert raw_rows(tmp_path) == [("exports/a", "delivered", "sending", 0, "raw/a")]
        ledger.settle([(row, "deleted")])
        ledger.mark_audited([row])
        assert raw_rows(tmp_path) == [("exports/a", "delivered", "deleted", 1, "raw/a")]
        (found,) = ledger.lookup("lake", ["exports/a"])["exports/a"]
        assert found.path == str(tmp_path / "raw" / "a")  # stored relative, read back whole
        assert found.run == "20261101T000000Z" and found.settled_at is not None


def test_adopted_files_and_unfinished_rows(tmp_path: Path) -> None:
    with opened(tmp_path) as ledger:
        staged = ledger.stage_many([new("exports/s")])[0]
        (adopted,) = ledger.deliver(
            staged=[], adopted=[new("exports/p")], sending=[], adopted_sending=True
        )
        unfinished = {d.key: d for d in ledger.unfinished("lake")}
        assert unfinished["exports/s"].state == "staged" and unfinished["exports/s"].id == staged
        assert unfinished["exports/p"].delete_state == "sending"
        assert unfinished["exports/p"].id == adopted
        assert ledger.unfinished("other-bucket") == []


def test_a_batch_of_staged_rows_is_one_commit(tmp_path: Path) -> None:
    with opened(tmp_path) as ledger:
        before = ledger.commits
        ids = ledger.stage_many([new(f"exports/{n}") for n in range(200)])
        assert ledger.commits - before == 1
        assert len(set(ids)) == 200 and ledger.count() == 200
        assert [d.key for d in ledger.unfinished("lake")][:2] == ["exports/0", "exports/1"]
        ledger.discard_many(ids[:150])
        assert ledger.count() == 50 and ledger.commits - before == 2


def test_prune_forgets_only_what_left_s3_long_ago(tmp_path: Path) -> None:
    with opened(tmp_path) as ledger:
        old, recent, kept = (
            ledger.stage_many([new(f"exports/{n}")])[0] for n in ("old", "recent", "kept")
        )
        ledger.deliver(staged=[old, recent, kept], adopted=[], sending=[], adopted_sending=False)
        ledger.settle([(old, "deleted"), (recent, "changed")])
        with sqlite3.connect(ledger_path(tmp_path / ".s3drain")) as conn:
            conn.execute("UPDATE deliveries SET settled_at = 1000 WHERE id = ?", (old,))
        assert ledger.prune(time.time() - 86400) == 1
        assert sorted(ledger.lookup("lake", ["exports/old", "exports/recent", "exports/kept"])) == [
            "exports/kept",
            "exports/recent",
        ]


def test_probe_results_are_cached_for_a_while(tmp_path: Path) -> None:
    with opened(tmp_path) as ledger:
        assert ledger.probe_result("http://x", "lake", max_age=86400) is None
        ledger.save_probe("http://x", "lake", '{"a": 1}')
        assert ledger.probe_result("http://x", "lake", max_age=86400) == '{"a": 1}'
        assert ledger.probe_result("http://x", "other", max_age=86400) is None
        assert ledger.probe_result("http://x", "lake", max_age=-1) is None


def test_read_only_opening_never_creates_or_writes(tmp_path: Path) -> None:
    assert Ledger.open_read_only(tmp_path / ".s3drain", tmp_path) is None
    assert not (tmp_path / ".s3drain").exists()
    with opened(tmp_path) as ledger:
        ledger.stage_many([new("exports/a")])
    reader = Ledger.open_read_only(tmp_path / ".s3drain", tmp_path)
    assert reader is not None
    with reader, pytest.raises(ConfigError):
        reader.stage_many([new("exports/b")])


# -- unusable ledgers: each a clear error, nothing changed ----------------------------------


def test_a_damaged_ledger_is_a_usage_error_naming_the_file(tmp_path: Path) -> None:
    state = tmp_path / ".s3drain"
    state.mkdir()
    ledger_path(state).write_bytes(b"this is not a database, it was overwritten by a script" * 50)
    before = ledger_path(state).read_bytes()
    with pytest.raises(ConfigError) as caught:
        Ledger.open(state, tmp_path)
    assert caught.value.exit_code == ExitCode.USAGE
    assert str(ledger_path(state)) in caught.value.message and "damaged" in caught.value.message
    assert "move it aside" in (caught.value.hint or "")
    assert ledger_path(state).read_bytes() == before  # never a silent fresh start


def test_a_ledger_from_a_newer_s3drain_is_refused_not_rewritten(tmp_path: Path) -> None:
    with opened(tmp_path):
        pass
    path = ledger_path(tmp_path / ".s3drain")
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="newer s3drain"):
        Ledger.open(tmp_path / ".s3drain", tmp_path)
    with pytest.raises(ConfigError, match="newer s3drain"):
        Ledger.open_read_only(tmp_path / ".s3drain", tmp_path)
    assert path.read_bytes() == before


def test_a_ledger_locked_by_another_process_is_exit_3(tmp_path: Path) -> None:
    with opened(tmp_path):
        pass
    path = ledger_path(tmp_path / ".s3drain")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeldError) as caught:
            Ledger.open(tmp_path / ".s3drain", tmp_path).begin_run("r", "lake", "")
        assert caught.value.exit_code == ExitCode.LOCKED
        assert str(path) in caught.value.message
    finally:
        holder.kill()
        holder.wait()


def test_a_full_disk_is_exit_5_and_the_ledger_stays_usable(tmp_path: Path) -> None:
    """Under a file-size limit (what a full disk looks like to a process), a write fails with
    a clear AbortError; afterwards, with room again, the ledger opens and holds what it held."""
    script = f"""
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from datetime import UTC, datetime
from s3drain.errors import AbortError
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_rows import NewDelivery
from s3drain.records import FileId, ObjectRecord
base = Path({str(tmp_path)!r})
ledger = Ledger.open(base / ".s3drain", base)
ledger.begin_run("r", "lake", "")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
size = (base / ".s3drain" / "state.db").stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 8192, size + 8192))
record = ObjectRecord("k" * 900, 1, "e" * 32, datetime(2026, 1, 1, tzinfo=UTC))
try:
    for n in range(10000):
        ledger.stage_many(
            [NewDelivery(record, "/x" * 400, FileId(1, n, 1, 1), None, None, "downloaded")]
        )
except AbortError as exc:
    print("ABORT", exc.exit_code, exc.message)
"""
    (tmp_path / ".s3drain").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert "ABORT 5" in done.stdout, done.stdout + done.stderr
    assert "disk is full" in done.stdout
    with Ledger.open(tmp_path / ".s3drain", tmp_path) as ledger:
        assert ledger.count() >= 0


def test_prune_keeps_a_row_whose_audit_line_is_still_owed(tmp_path: Path) -> None:
    with opened(tmp_path) as ledger:
        (owed,) = ledger.stage_many([new("exports/owed")])
        ledger.deliver(staged=[owed], adopted=[], sending=[owed], adopted_sending=False)
        ledger.settle([(owed, "deleted")])
        with sqlite3.connect(ledger_path(tmp_path / ".s3drain")) as conn:
            conn.execute("UPDATE deliveries SET settled_at = 1000 WHERE id = ?", (owed,))
        assert ledger.prune(time.time() - 86400) == 0
        ledger.mark_audited([owed])
        assert ledger.prune(time.time() - 86400) == 1
