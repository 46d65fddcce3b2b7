"""The ledger through the real CLI: unusable (damaged, locked by another process, on a full disk,
from a newer s3drain) - each one clear line or two with its documented exit code, naming the
file, and nothing downloaded or deleted; `s3drain history`; and --ledger-retention."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import LAUNCHER
from tests.support.drainkit import bucket_keys
from tests.support.ledgerkit import (
    LEDGER,
    PREFIX,
    body,
    drain_cli,
    files,
    ledger_rows,
    put,
)
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import S3Client
from tests.test_cli_e2e import BUCKET, assert_clean_error, cli_env, drain_args, run_cli

# -- the ledger unusable -----------------------------------------------------------------------


def delivered_once(base: Path, s3_url: str, s3: S3Client) -> dict[str, bytes]:
    """A base path with a ledger (one run delivered `old.csv`), then new objects in S3."""
    s3.create_bucket(Bucket=BUCKET)
    put(s3, "old.csv", b"delivered yesterday\n")
    assert drain_cli(base, s3_url).code == 0
    waiting = {f"new/{i}.csv": f"row {i}\n".encode() for i in range(5)}
    for rel, data in waiting.items():
        put(s3, rel, data)
    return waiting


def assert_nothing_changed(base: Path, s3: S3Client, waiting: dict[str, bytes]) -> None:
    assert {rel: body(s3, rel) for rel in waiting} == waiting
    assert files(base, "raw") == {"old.csv": b"delivered yesterday\n"}
    assert not [n for n in os.listdir(base / "raw") if n.startswith(".s3drain-")]


def run_drain(base: Path, s3_url: str) -> subprocess.CompletedProcess[str]:
    return run_cli(drain_args(base), cli_env(s3_url))


def test_a_damaged_ledger_stops_the_run(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    waiting = delivered_once(tmp_path, s3_url, s3)
    ledger = tmp_path / LEDGER
    ledger.write_bytes(b"\x00garbage, not what s3drain wrote\n" * 200)

    result = run_drain(tmp_path, s3_url)

    assert_clean_error(result, 2, str(ledger), "damaged")
    assert_nothing_changed(tmp_path, s3, waiting)
    assert ledger.read_bytes() == b"\x00garbage, not what s3drain wrote\n" * 200  # left as found


def test_a_ledger_from_a_newer_s3drain_is_refused_unchanged(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    waiting = delivered_once(tmp_path, s3_url, s3)
    ledger = tmp_path / LEDGER
    with contextlib.closing(sqlite3.connect(ledger)) as conn:
        conn.execute("PRAGMA user_version = 99")
    before = ledger.read_bytes()

    result = run_drain(tmp_path, s3_url)

    assert_clean_error(result, 2, str(ledger), "newer s3drain", "schema 99")
    assert_nothing_changed(tmp_path, s3, waiting)
    assert ledger.read_bytes() == before


@contextlib.contextmanager
def held_exclusive(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process (a Python sqlite3 session, as a `sqlite3` shell would) holding
    BEGIN EXCLUSIVE on the ledger until the block ends."""
    script = (
        "import sqlite3, sys\n"
        f"conn = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "conn.execute('BEGIN EXCLUSIVE')\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_ledger_locked_by_another_process_stops_the_run(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    waiting = delivered_once(tmp_path, s3_url, s3)
    ledger = tmp_path / LEDGER

    with held_exclusive(ledger):
        started = time.monotonic()
        result = run_drain(tmp_path, s3_url)
        waited = time.monotonic() - started

    assert_clean_error(result, 3, str(ledger), "locked by another process")
    assert waited < 60  # it waits a few seconds for the lock, not forever
    assert_nothing_changed(tmp_path, s3, waiting)
    assert drain_cli(tmp_path, s3_url).code == 0  # once released, the next run goes on


@contextlib.contextmanager
def tiny_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (root only)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            f"CANNOT MOUNT A TMPFS HERE ({done.stderr.strip() or done.returncode}): the full-disk "
            "test of the ledger needs root (CI runs as root)"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system under `folder`, leaving about `leave` bytes free."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with (folder / "filler").open("wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    assert os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize <= leave


def test_a_full_disk_under_the_state_folder_stops_the_run_before_the_ledger(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    """Less than the 1 MiB s3drain wants free under .s3drain/: the check before anything
    changes stops the run (exit 5) before the ledger is even opened."""
    base = tmp_path / "base"
    with tiny_disk(base / ".s3drain", "2m") as state:
        waiting = delivered_once(base, s3_url, s3)
        fill(state, leave=8192)
        before = (base / LEDGER).read_bytes()

        result = run_drain(base, s3_url)

        assert_clean_error(result, 5, str(state), "full")
        assert_nothing_changed(base, s3, waiting)
        assert (base / LEDGER).read_bytes() == before
        (state / "filler").unlink()
        again = drain_cli(base, s3_url)  # space freed: the next run goes on
        assert again.code == 0, again.stderr
        assert {rel: body(s3, rel) for rel in waiting} == dict.fromkeys(waiting)


def test_a_ledger_that_cannot_grow_stops_the_run(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    """The disk has room but the ledger cannot grow (a quota, a file-size limit: here
    RLIMIT_FSIZE on the process, so any write past 1,000 bytes fails with EFBIG): the ledger's
    own error, naming it, exit 5, and nothing changed."""
    waiting = delivered_once(tmp_path, s3_url, s3)
    ledger = tmp_path / LEDGER
    assert not Path(f"{ledger}-wal").exists()  # the first run's close folded its WAL in

    result = subprocess.run(
        [sys.executable, str(LAUNCHER), "--fsize", "1000", "--", *drain_args(tmp_path)],
        env=cli_env(s3_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert_clean_error(result, 5, str(ledger), "full")
    assert_nothing_changed(tmp_path, s3, waiting)


def test_the_disk_under_the_ledger_fills_mid_run(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    """The ledger grows (its WAL: a few pages per commit, long keys make big rows) until
    .s3drain/'s disk is full, part-way through the downloads: the run stops with the disk-full
    exit code naming the ledger, or the audit log beside it (not as an internal error); nothing is deleted unless it was
    delivered and its audit line written; once space is freed the next run finishes the rest,
    each delete recorded once."""
    base = tmp_path / "base"
    with tiny_disk(base / ".s3drain", "24m") as state:
        s3.create_bucket(Bucket=BUCKET)
        deep = "deep/" * 150
        objects = {f"{deep}{i:04d}.csv": f"row {i}\n".encode() for i in range(400)}
        for rel, data in objects.items():
            put(s3, rel, data)
        (base / "raw").mkdir(parents=True)
        fill(state, leave=1200 * 1024)

        first = drain_cli(base, s3_url)

        assert first.code == 5, first.stderr
        # The audit log shares the disk: which of the two runs out first is timing (1 run in
        # 4 was the audit log once the run kept to one core, `--pin`). Either is named.
        error = first.summary["error"]
        assert str(base / LEDGER) in error or "no room to record deletes in the audit log" in error
        assert "full" in error
        assert first.summary["objects"]["failed"] > 0
        deleted = {k[len(PREFIX) :] for k, line in first.lines.items() if line["deleted"]}
        assert len(deleted) < len(objects)
        raw = files(base, "raw")
        assert bucket_keys(s3) == {PREFIX + rel for rel in objects if rel not in deleted}
        for rel in deleted:
            assert raw[rel] == objects[rel]
        for rel, data in raw.items():
            assert data == objects[rel]  # whatever got its name is whole

        (state / "filler").unlink()
        second = drain_cli(base, s3_url)

        assert second.code == 0, second.stderr
        assert bucket_keys(s3) == set()
        assert files(base, "raw") == objects
        lines = [json.loads(x) for x in (state / "audit.jsonl").read_text().splitlines()]
        assert sorted(x["key"] for x in lines if x["deleted"]) == sorted(
            PREFIX + rel for rel in objects
        )


# -- s3drain history ---------------------------------------------------------------------------


def history(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["history", *args, "--local-base-path", str(base)], cli_env("http://unused"))


def set_times(base: Path, rel: str, **columns: float) -> None:
    """Move a row's clock back (as if it were delivered or settled long ago)."""
    with contextlib.closing(sqlite3.connect(base / LEDGER)) as conn:
        for column, value in columns.items():
            assert column in ("delivered_at", "settled_at")
            conn.execute(
                f"UPDATE deliveries SET {column} = ? WHERE key = ?",  # noqa: S608
                (value, PREFIX + rel),
            )
        conn.commit()


@pytest.fixture
def with_history(tmp_path: Path, s3_url: str, s3: S3Client) -> Path:
    """a, b, sub/c delivered and deleted; kept.csv delivered with --no-delete; y.csv overwritten
    while its delete was on its way (`changed`)."""
    s3.create_bucket(Bucket=BUCKET)
    for rel in ("a.csv", "b.csv", "sub/c.csv", "y.csv"):
        put(s3, rel, f"{rel}\n".encode())

    def overwrite(info: RequestInfo) -> None:
        if (
            info.op == "DeleteObject"
            and info.key == PREFIX + "y.csv"
            and body(s3, "y.csv") == b"y.csv\n"
        ):
            put(s3, "y.csv", b"y.csv, corrected\n")

    with FaultProxy(s3_url, before_forward=overwrite) as proxy:
        assert drain_cli(tmp_path, proxy.url).code == 1
    put(s3, "kept.csv", b"kept\n")
    assert drain_cli(tmp_path, s3_url, "--no-delete", "--include", "kept.csv").code == 0
    return tmp_path


def keys_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(
        json.loads(line)["key"][len(PREFIX) :] for line in result.stdout.splitlines() if line
    )


def test_history_by_key_glob_status_since_and_as_json(with_history: Path) -> None:
    base = with_history

    one = history(base, PREFIX + "a.csv")
    assert one.returncode == 0, one.stderr
    (line,) = one.stdout.splitlines()
    assert f"{PREFIX}a.csv" in line and "deleted" in line and str(base / "raw" / "a.csv") in line

    assert keys_of(history(base, PREFIX + "sub/*", "--json")) == ["sub/c.csv"]
    assert keys_of(history(base, PREFIX + "*.csv", "--json")) == [
        "a.csv",
        "b.csv",
        "kept.csv",
        "sub/c.csv",
        "y.csv",
    ]  # '*' crosses '/' here
    by_status = {
        status: keys_of(history(base, "--status", status, "--json"))
        for status in ("delivered", "deleted", "changed")
    }
    assert by_status == {
        "delivered": ["kept.csv"],
        "deleted": ["a.csv", "b.csv", "sub/c.csv"],
        "changed": ["y.csv"],
    }
    set_times(base, "b.csv", delivered_at=time.time() - 10 * 86400)
    assert keys_of(history(base, "--since", "2d", "--json")) == [
        "a.csv",
        "kept.csv",
        "sub/c.csv",
        "y.csv",
    ]
    assert len(keys_of(history(base, "--since", "2000-01-01", "--json"))) == 5

    result = history(base, "--json")  # JSON Lines: one object per delivery

    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 5
    for row in rows:
        assert {"key", "etag", "size", "path", "state", "delete_state", "run", "how"} <= set(row)
        assert row["bucket"] == BUCKET and row["state"] == "delivered"
    (y,) = [r for r in rows if r["key"] == PREFIX + "y.csv"]
    assert y["delete_state"] == "changed" and y["path"] == str(base / "raw" / "y.csv")


def test_history_exit_codes_and_an_unusable_ledger(with_history: Path, tmp_path: Path) -> None:
    nothing = history(with_history, PREFIX + "no-such-key.csv")
    assert nothing.returncode == 1 and nothing.stdout == ""
    in_flight = history(with_history, "--status", "in-flight")
    assert in_flight.returncode == 1 and in_flight.stdout == ""
    later = history(with_history, "--since", "2099-01-01", "--json")
    assert later.returncode == 1 and later.stdout == ""

    no_ledger = history(tmp_path / "elsewhere")
    assert_clean_error(no_ledger, 2, "no ledger at", str(tmp_path / "elsewhere" / LEDGER))
    bad_since = history(with_history, "--since", "yesterday-ish")
    assert_clean_error(bad_since, 2, "--since")

    ledger = with_history / LEDGER
    with contextlib.closing(sqlite3.connect(ledger)) as conn:
        conn.execute("PRAGMA user_version = 99")
    assert_clean_error(history(with_history), 2, "newer s3drain", str(ledger))
    ledger.write_bytes(b"junk" * 1000)
    assert_clean_error(history(with_history), 2, "damaged", str(ledger))


def test_ledger_retention_prunes_at_the_end_of_a_run(
    with_history: Path, s3_url: str, s3: S3Client
) -> None:
    """Rows of objects that left S3 longer ago than --ledger-retention go at the end of a run;
    rows of objects still in S3, or that left since, stay."""
    base = with_history
    now = time.time()
    set_times(base, "a.csv", delivered_at=now - 200 * 86400, settled_at=now - 100 * 86400)
    set_times(base, "b.csv", delivered_at=now - 200 * 86400, settled_at=now - 10 * 86400)
    set_times(base, "kept.csv", delivered_at=now - 200 * 86400)  # still in S3: never settled
    assert len(ledger_rows(base)) == 5

    run = drain_cli(base, s3_url, "--ledger-retention", "30d", "--exclude", "kept.csv")

    assert run.code == 1, run.stderr  # y.csv's corrected version: a conflict with raw/y.csv
    assert sorted(r["key"][len(PREFIX) :] for r in ledger_rows(base)) == [
        "b.csv",
        "kept.csv",
        "sub/c.csv",
        "y.csv",
    ]
    assert body(s3, "kept.csv") == b"kept\n"
    default = drain_cli(base, s3_url, "--exclude", "kept.csv")  # 90 days: b stays
    assert default.code == 1
    assert len(ledger_rows(base)) == 4
