"""The ledger's database file: opened (WAL, durable commits), brought to this schema by forward
migrations, and SQLite's errors put in the user's words.

A schema version lives in SQLite's `user_version`. Each migration runs once, in its own
transaction, in order; a ledger from a newer s3drain (a higher version) is refused, never
rewritten, since an older s3drain cannot know what the newer one recorded.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from s3drain.errors import AbortError, ConfigError, LockHeldError, S3DrainError

SCHEMA_VERSION = 1

# One entry per version: the statements that take version N-1 to N.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE meta (
            name  TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE runs (
            id        INTEGER PRIMARY KEY,
            run       TEXT NOT NULL,
            started   REAL NOT NULL,
            ended     REAL,
            exit_code INTEGER,
            bucket    TEXT NOT NULL,
            prefix    TEXT NOT NULL
        )""",
        # One row per object version s3drain delivered (or took over from a local file whose
        # content proved it). `state`: staged (the temp file is verified and fsynced, its real
        # name not yet durable) -> delivered; or `unproven`: a delete an s3drain before the ledger
        # journaled on a match by size alone (legacy.py), settled like any, never a delivery.
        # `delete_state`: NULL (not sent) -> sending (the
        # delete may be in flight) -> deleted | changed (S3 kept a newer version).
        # `audited` = 0 while the outcome's line is not yet in the audit log.
        """CREATE TABLE deliveries (
            id            INTEGER PRIMARY KEY,
            bucket        TEXT NOT NULL,
            key           TEXT NOT NULL,
            etag          TEXT NOT NULL,
            version_id    TEXT,
            size          INTEGER NOT NULL,
            last_modified TEXT NOT NULL,
            checksums     TEXT,
            verified      TEXT,
            path          TEXT NOT NULL,
            device        INTEGER,
            inode         INTEGER,
            mtime_ns      INTEGER,
            run_id        INTEGER NOT NULL REFERENCES runs (id),
            how           TEXT NOT NULL,
            state         TEXT NOT NULL,
            delivered_at  REAL,
            delete_state  TEXT,
            settled_at    REAL,
            audited       INTEGER NOT NULL DEFAULT 1
        )""",
        "CREATE INDEX deliveries_by_key ON deliveries (bucket, key)",
        # Small partial indexes: a run's start looks only at unfinished rows, pruning only at
        # settled ones.
        """CREATE INDEX deliveries_unfinished ON deliveries (state, delete_state)
            WHERE state = 'staged' OR delete_state = 'sending' OR audited = 0""",
        "CREATE INDEX deliveries_settled ON deliveries (settled_at) WHERE settled_at IS NOT NULL",
        """CREATE TABLE probes (
            endpoint  TEXT NOT NULL,
            bucket    TEXT NOT NULL,
            result    TEXT NOT NULL,
            probed_at REAL NOT NULL,
            PRIMARY KEY (endpoint, bucket)
        )""",
    ),
}


class NewerSchema(Exception):
    """The ledger was written by a newer s3drain."""

    def __init__(self, found: int) -> None:
        super().__init__(found)
        self.found = found


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the ledger to SCHEMA_VERSION; returns the version it had (0: new)."""
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise NewerSchema(found)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


LEDGER_NAME = "state.db"
BUSY_TIMEOUT_MS = 5000


def ledger_path(state_dir: Path) -> Path:
    return state_dir / LEDGER_NAME


def translate(exc: sqlite3.Error, path: Path, doing: str) -> S3DrainError:
    """SQLite's errors as what they mean for the user, with what to do."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return LockHeldError(
            f"the ledger {path} is locked by another process ({doing}); this run changed "
            "nothing more",
            hint="wait for the other process (another s3drain, or a sqlite3 shell) to finish",
        )
    if "full" in text or (isinstance(exc, sqlite3.OperationalError) and "disk i/o" in text):
        return AbortError(
            f"cannot write the ledger {path}: the disk is full or failing ({exc}); free space "
            "and run again; objects not yet deleted stay in S3"
        )
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    ):
        return ConfigError(
            f"the ledger {path} is damaged ({exc}); nothing was changed",
            hint="restore it from a backup, or move it aside to start a new one (deliveries it "
            "recorded are then proven again from the files' content, or downloaded again)",
        )
    return ConfigError(f"cannot use the ledger {path} ({doing}): {exc}")


def _newer(path: Path, found: int) -> ConfigError:
    return ConfigError(
        f"the ledger {path} was written by a newer s3drain (schema {found}; this one knows "
        f"{SCHEMA_VERSION}); it was not changed",
        hint="upgrade s3drain on this host",
    )


def connect(path: Path) -> tuple[sqlite3.Connection, bool]:
    """The ledger for writing, created when missing; (connection, created)."""
    created = not path.exists()
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
    except sqlite3.Error as exc:
        raise translate(exc, path, "opening it") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        # WAL needs shared memory; where a file system cannot give it, the rollback journal is
        # as durable, only slower.
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
        if created:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('created', ?)",
                (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),),
            )
            conn.execute("COMMIT")
    except NewerSchema as exc:
        conn.close()
        raise _newer(path, exc.found) from None
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, path, "opening it") from None
    return conn, created


def connect_read_only(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        found = schema_version(conn)
    except sqlite3.Error as exc:
        raise translate(exc, path, "reading it") from None
    if found > SCHEMA_VERSION:
        conn.close()
        raise _newer(path, found)
    return conn
