"""The harness's own eyes: what it reads from s3drain's ledger, and the keys it sees in a
DeleteObjects request. A harness that misreads either would excuse or miss what it should
not."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.faults.harness import Local, read_ledger
from tests.faults.scenarios import _batch_keys
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import S3Client, s3_client

# The columns the harness reads, as s3drain's schema names them (the trials would fail loudly
# with a harness error if s3drain renamed one).
_DELIVERIES = """CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, etag TEXT NOT NULL, state TEXT NOT NULL,
    delete_state TEXT, audited INTEGER NOT NULL DEFAULT 1)"""


def ledger_with(base: Path, rows: list[tuple[str, str, str, str | None, int]]) -> Local:
    local = Local(base)
    local.state.mkdir(parents=True)
    conn = sqlite3.connect(local.ledger)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(_DELIVERIES)
    conn.executemany(
        "INSERT INTO deliveries (key, etag, state, delete_state, audited) VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    return local


def test_no_ledger_reads_as_nothing_unfinished(tmp_path: Path) -> None:
    assert not read_ledger(Local(tmp_path / "base")).unfinished


def test_ledger_in_flight_and_owed_rows(tmp_path: Path) -> None:
    local = ledger_with(
        tmp_path / "base",
        [
            ("a", "e1", "delivered", "sending", 0),  # delete maybe in flight
            ("b", "e2", "delivered", "deleted", 0),  # deleted, audit line owed
            ("c", "e3", "delivered", "deleted", 1),  # settled: not owed
            ("d", "e4", "staged", None, 1),  # a download without its real name yet
            ("e", "e5", "delivered", None, 1),  # delivered, delete not yet sent
        ],
    )
    view = read_ledger(local)
    assert view.sending == {("a", "e1")}
    assert view.unaudited == {("a", "e1"), ("b", "e2")}
    assert view.owed == {("a", "e1"), ("b", "e2")}
    assert view.staged == 1


def test_a_ledger_killed_before_its_tables_reads_as_empty(tmp_path: Path) -> None:
    local = Local(tmp_path / "base")
    local.state.mkdir(parents=True)
    local.ledger.write_bytes(b"")
    assert not read_ledger(local).unfinished


def test_the_proxy_shows_a_delete_batch_s_keys_and_still_forwards_it(
    s3: S3Client, s3_url: str
) -> None:
    s3.create_bucket(Bucket="batch")
    keys = ["plain.bin", "odd & <name>.bin", "ünï/x y.bin"]
    for key in keys:
        s3.put_object(Bucket="batch", Key=key, Body=b"x")
    seen: list[list[str]] = []

    def hook(info: RequestInfo) -> None:
        if info.op == "DeleteObjects":
            seen.append(_batch_keys(info.body))

    with FaultProxy(s3_url, before_forward=hook) as proxy:
        client = s3_client(proxy.url)
        answer = client.delete_objects(
            Bucket="batch", Delete={"Objects": [{"Key": k} for k in keys]}
        )
        client.close()
    assert seen == [keys]
    assert sorted(d["Key"] for d in answer["Deleted"]) == sorted(keys)
    assert s3.list_objects_v2(Bucket="batch").get("KeyCount") == 0
