"""The delivery ledger: what s3drain delivered, as recorded facts, in SQLite.

`<local-base-path>/.s3drain/state.db` (WAL, synchronous=FULL: a commit is on disk when it
returns). One row per object version delivered: bucket, key, ETag, version, size, LastModified,
the checksums that were verified, where the file was written and its device, inode and mtime,
the run, and when it was delivered and deleted. A delete is marked `sending` in the same row
before it goes out, so the ledger is also the delete journal.

Order is what makes a row true: a downloaded file's row is committed as `staged` (with the temp
file's inode) before the file gets its real name, and becomes `delivered` only after the link
and the folder fsync. The next run completes a staged row whose inode it finds under the real
name and drops one whose file is not there. A row never says "delivered" for bytes that are not
durable under their real name.

One connection, one writer: every statement runs under one lock, and every write is one commit
per batch (the linker's staged rows, the deleter's deliveries and answers), never per object.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from s3drain.local.ledger_db import connect, connect_read_only, ledger_path, translate
from s3drain.local.ledger_rows import (
    SELECT,
    STATUS_SQL,
    Delivery,
    NewDelivery,
    delivery_from_row,
)
from s3drain.records import UNKNOWN_TIME

_IN_CHUNK = 500  # keys per IN (...) query, under SQLite's bound-parameter limit
_SENDING = "UPDATE deliveries SET delete_state = 'sending', audited = 0 WHERE id = ?"
_FINAL = ("deleted", "changed")  # the delete states S3's answer settles for good
_SET_META = "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)"


class Ledger:
    def __init__(self, conn: sqlite3.Connection, path: Path, base: Path, created: bool) -> None:
        self._conn = conn
        self.path = path
        self._base = base
        self._base_text = str(base).rstrip("/") + "/"  # paths are absolute and normalised
        self.created = created  # this run made it (a first run, or an old install's)
        self._lock = threading.Lock()
        self._run_id: int | None = None
        self.run: str | None = None
        self._bucket: str | None = None
        self.commits = 0

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path, base: Path) -> Self:
        """Open (or create) the ledger for a run: migrated to this schema, WAL, durable commits."""
        path = ledger_path(state_dir)
        conn, created = connect(path)
        return cls(conn, path, base, created)

    @classmethod
    def open_read_only(cls, state_dir: Path, base: Path) -> Self | None:
        """For a dry run and `s3drain history`: None where no ledger exists yet; never writes."""
        path = ledger_path(state_dir)
        if not path.exists():
            return None
        return cls(connect_read_only(path), path, base, created=False)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- the write path ------------------------------------------------------------------------

    def _write(self, doing: str, work: Any) -> Any:
        """Run `work(conn)` in one IMMEDIATE transaction, committed durably."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(self._conn)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise translate(exc, self.path, doing) from None
            self.commits += 1
            return result

    def _read(self, doing: str, sql: str, params: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate(exc, self.path, doing) from None

    def begin_run(self, run: str, bucket: str, prefix: str) -> None:
        def work(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO runs (run, started, bucket, prefix) VALUES (?, ?, ?, ?)",
                (run, time.time(), bucket, prefix),
            )
            return int(cursor.lastrowid or 0)

        self._run_id = self._write("recording the run", work)
        self.run = run
        self._bucket = bucket

    def join_run(self, run: str, bucket: str) -> None:
        """Record deliveries under a run another process began (a lane of it): its row is
        that process's to begin and end."""
        row = self._conn.execute(
            "SELECT id FROM runs WHERE run = ? AND bucket = ? ORDER BY id DESC LIMIT 1",
            (run, bucket),
        ).fetchone()
        self._run_id = None if row is None else int(row[0])
        self.run = run
        self._bucket = bucket

    def end_run(self, exit_code: int) -> None:
        if self._run_id is None:
            return
        run_id = self._run_id
        self._write(
            "recording the run's end",
            lambda conn: conn.execute(
                "UPDATE runs SET ended = ?, exit_code = ? WHERE id = ?",
                (time.time(), exit_code, run_id),
            ),
        )

    def _stored_path(self, path: str) -> str:
        """Relative to the base path when inside it, so a moved base path keeps its ledger."""
        base = self._base_text
        return path[len(base) :] if path.startswith(base) else path

    def _insert(self, conn: sqlite3.Connection, new: NewDelivery, state: str) -> int:
        r, f = new.record, new.file
        cursor = conn.execute(
            "INSERT INTO deliveries (bucket, key, etag, version_id, size, last_modified, "
            "checksums, verified, path, device, inode, mtime_ns, run_id, how, state, "
            "delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._bucket,
                r.key,
                r.etag,
                r.version_id,
                r.size,
                "" if r.last_modified == UNKNOWN_TIME else r.last_modified.isoformat(),
                new.checksums,
                new.verified,
                self._stored_path(new.path),
                f.device if f else None,
                f.inode if f else None,
                f.mtime_ns if f else None,
                self._run_id,
                new.how,
                state,
                time.time() if state == "delivered" else None,
            ),
        )
        return int(cursor.lastrowid or 0)

    def stage_many(self, rows: Sequence[NewDelivery]) -> list[int]:
        """Record downloaded files (their temp files' inodes) before they get their real names:
        one commit for the batch. Returns the row ids, in order."""
        ids: list[int] = self._write(
            "recording downloads", lambda conn: [self._insert(conn, n, "staged") for n in rows]
        )
        return ids

    def set_meta(self, name: str, value: str) -> None:
        self._write("recording a note", lambda conn: conn.execute(_SET_META, (name, value)))

    def take_over(
        self,
        journaled: Sequence[tuple[NewDelivery, bool]],
        files: Sequence[NewDelivery],
        note: tuple[str, str],
    ) -> None:
        """An older s3drain's records and the note that they were taken over, in one commit (a
        run stopped midway leaves none; the next takes them over again): journaled deletes in
        flight - `unproven`, never vouching, where the entry records no delivery - and files."""

        def work(conn: sqlite3.Connection) -> None:
            for new, proven in journaled:
                conn.execute(
                    _SENDING, (self._insert(conn, new, "delivered" if proven else "unproven"),)
                )
            for new in files:
                self._insert(conn, new, "delivered")
            conn.execute(_SET_META, note)

        self._write("taking over an older s3drain's records", work)

    def meta(self, name: str) -> str | None:
        rows = self._read("reading a note", "SELECT value FROM meta WHERE name = ?", [name])
        return str(rows[0][0]) if rows else None

    def discard(self, delivery_id: int) -> None:
        """A staged row whose file never got its real name."""
        self.discard_many([delivery_id])

    def discard_many(self, ids: Sequence[int]) -> None:
        self._write(
            "dropping staged rows",
            lambda conn: conn.executemany(
                "DELETE FROM deliveries WHERE id = ?", [(i,) for i in ids]
            ),
        )

    def deliver(
        self,
        *,
        staged: Sequence[int],
        adopted: Sequence[NewDelivery],
        sending: Sequence[int],
        adopted_sending: bool,
    ) -> list[int]:
        """After the folder fsync, in one commit: staged rows become delivered, files whose
        content proved an object are recorded as delivered (`adopted`), and the rows whose
        delete is about to be sent are marked `sending` (`sending` ids, and the adopted rows
        when `adopted_sending`). Returns the ids of the adopted rows."""

        def work(conn: sqlite3.Connection) -> list[int]:
            now = time.time()
            conn.executemany(
                "UPDATE deliveries SET state = 'delivered', delivered_at = ? WHERE id = ?",
                [(now, i) for i in staged],
            )
            new_ids = [self._insert(conn, n, "delivered") for n in adopted]
            marked = [*sending, *(new_ids if adopted_sending else [])]
            conn.executemany(_SENDING, [(i,) for i in marked])
            return new_ids

        result: list[int] = self._write("recording deliveries", work)
        return result

    def settle(self, results: Sequence[tuple[int, str | None]]) -> None:
        """What S3 answered: `deleted`, `changed` (a newer version kept), `sending` (no answer
        to trust: still in flight, the next run asks S3), or None (not deleted; the next run
        tries again). Only `deleted` and `changed` are settled (and may be pruned)."""
        now = time.time()
        rows = [(state, now if state in _FINAL else None, i) for i, state in results]
        self._write(
            "recording deletes",
            lambda conn: conn.executemany(
                "UPDATE deliveries SET delete_state = ?, settled_at = ? WHERE id = ?", rows
            ),
        )

    def mark_audited(self, ids: Iterable[int]) -> None:
        chosen = [(i,) for i in ids]
        if chosen:
            self._write(
                "recording audit lines",
                lambda conn: conn.executemany(
                    "UPDATE deliveries SET audited = 1 WHERE id = ?", chosen
                ),
            )

    def complete(self, delivery_id: int) -> None:
        self._write(
            "completing a staged row",
            lambda conn: conn.execute(
                "UPDATE deliveries SET state = 'delivered', delivered_at = ? WHERE id = ?",
                (time.time(), delivery_id),
            ),
        )

    def prune(self, older_than: float) -> int:
        """Forget rows whose object left S3 before `older_than` (seconds since the epoch). A row
        whose audit line is still owed stays until the line is written (the next run writes it
        from the row)."""

        def work(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM deliveries WHERE settled_at IS NOT NULL AND settled_at < ? "
                "AND audited = 1",
                (older_than,),
            )
            conn.execute(
                "DELETE FROM runs WHERE ended IS NOT NULL AND ended < ? AND id NOT IN "
                "(SELECT DISTINCT run_id FROM deliveries)",
                (older_than,),
            )
            return int(cursor.rowcount)

        pruned: int = self._write("pruning old rows", work)
        return pruned

    # -- reading -------------------------------------------------------------------------------

    def lookup(self, bucket: str, keys: Sequence[str]) -> dict[str, list[Delivery]]:
        """Every row of these keys, by key: one query per 500 keys (a listing page is two)."""
        found: dict[str, list[Delivery]] = {}
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = list(keys[start : start + _IN_CHUNK])
            marks = ",".join("?" * len(chunk))
            for row in self._read(
                "looking up deliveries",
                f"{SELECT} WHERE d.bucket = ? AND d.key IN ({marks})",
                [bucket, *chunk],
            ):
                delivery = delivery_from_row(row, self._base)
                found.setdefault(delivery.key, []).append(delivery)
        return found

    def unfinished(self, bucket: str) -> list[Delivery]:
        """Rows a killed run left: staged, delete in flight, or outcome not yet audited."""
        return [
            delivery_from_row(row, self._base)
            for row in self._read(
                "reading unfinished rows",
                f"{SELECT} WHERE d.bucket = ? AND (d.state = 'staged' OR "
                "d.delete_state = 'sending' OR d.audited = 0) ORDER BY d.id",
                [bucket],
            )
        ]

    def history(
        self,
        *,
        pattern: str | None = None,
        key: str | None = None,
        since: float | None = None,
        status: str | None = None,
        bucket: str | None = None,
    ) -> Iterator[Delivery]:
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if pattern is not None:
            where.append("d.key GLOB ?")
            params.append(pattern)
        if key is not None:
            where.append("d.key = ?")
            params.append(key)
        if since is not None:
            where.append("COALESCE(d.delivered_at, 0) >= ?")
            params.append(since)
        if bucket is not None:
            where.append("d.bucket = ?")
            params.append(bucket)
        if status is not None:
            where.append(STATUS_SQL[status])
        sql = f"{SELECT} WHERE {' AND '.join(where)} ORDER BY d.delivered_at, d.id"
        for row in self._read("reading the history", sql, params):
            yield delivery_from_row(row, self._base)

    def count(self) -> int:
        return int(self._read("counting rows", "SELECT COUNT(*) FROM deliveries")[0][0])

    # -- the server probe's cache ---------------------------------------------------------------

    def probe_result(self, endpoint: str, bucket: str, max_age: float) -> str | None:
        rows = self._read(
            "reading the probe cache",
            "SELECT result FROM probes WHERE endpoint = ? AND bucket = ? AND probed_at >= ?",
            [endpoint, bucket, time.time() - max_age],
        )
        return str(rows[0][0]) if rows else None

    def save_probe(self, endpoint: str, bucket: str, result: str) -> None:
        self._write(
            "caching the probe",
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO probes (endpoint, bucket, result, probed_at) "
                "VALUES (?, ?, ?, ?)",
                (endpoint, bucket, result, time.time()),
            ),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
