"""Figures of the ledger: its size per million rows, and the commits a run makes.

    python -m tests.support.ledger_figures [--rows 1000000] [--dir DIR]
    python -m tests.support.ledger_figures --small-objects 2000

The first fills a new ledger with realistic rows (keys of about 60 bytes, their paths, an ETag, a CRC32,
one run) the way a drain writes them - `Ledger.deliver` per batch of 1000 with the deletes
marked in flight, then `settle` and `mark_audited` for the batch - and prints the file's size
(WAL folded in) and the time it took. The second drains that many small objects from a moto
server with the CLI's defaults (16 workers, deletes batched by 1000 or 5 s) and prints the
ledger's commits per run and per object. `tests/test_ledger_figures.py` runs both small and
holds them to bounds.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from s3drain.local.ledger import Ledger
from s3drain.local.ledger_db import ledger_path
from s3drain.local.ledger_rows import NewDelivery
from s3drain.records import FileId, ObjectRecord
from s3drain.s3.client import make_client
from tests.support.drainkit import BUCKET, PREFIX, bucket_keys, drain, drain_settings
from tests.support.server import MotoServer, s3_client

MiB = 1024 * 1024
BATCH = 1000


@dataclass(frozen=True)
class Figures:
    rows: int
    size: int  # bytes of state.db after its WAL was folded in
    seconds: float
    commits: int

    @property
    def mib_per_million(self) -> float:
        return self.size / MiB * 1_000_000 / self.rows

    def __str__(self) -> str:
        return (
            f"{self.rows:,} rows: {self.size / MiB:,.1f} MiB ({self.size / self.rows:,.0f} B/row, "
            f"{self.mib_per_million:,.0f} MiB per 1M rows), {self.seconds:,.1f} s, "
            f"{self.commits:,} commits"
        )


def realistic_rows(base: Path, count: int, start: int = 0) -> Iterator[NewDelivery]:
    """Rows like a nightly export's: `exports/2024/<day>/<table>/part-<n>-<hash>.csv.gz`."""
    when = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    for n in range(start, start + count):
        digest = hashlib.md5(n.to_bytes(8, "big")).hexdigest()
        key = f"exports/2024/{n % 366:03d}/orders_{n % 17:02d}/part-{n:08d}-{digest[:8]}.csv.gz"
        record = ObjectRecord(key, 4096 + n % 100_000, digest, when + timedelta(seconds=n))
        path = str(base / "raw" / key[len("exports/2024/") :])
        crc = hashlib.sha1(digest.encode()).digest()[:4].hex()
        yield NewDelivery(
            record,
            path,
            FileId(2049, 1_000_000 + n, record.size, 1_790_000_000_000_000_000 + n),
            f"crc32:{crc}==",
            "crc32",
            "downloaded",
        )


def fill_ledger(base: Path, rows: int, batch: int = BATCH) -> Figures:
    """A new ledger under `base`/.s3drain with `rows` rows written as a drain writes them."""
    state = base / ".s3drain"
    state.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ledger = Ledger.open(state, base)
    try:
        ledger.begin_run("20261101T020000Z", "lake", "exports/2024/")
        for first in range(0, rows, batch):
            new = list(realistic_rows(base, min(batch, rows - first), first))
            ids = ledger.deliver(staged=[], adopted=new, sending=[], adopted_sending=True)
            ledger.settle([(i, "deleted") for i in ids])
            ledger.mark_audited(ids)
        ledger.end_run(0)
        commits = ledger.commits
    finally:
        ledger.close()  # the last connection's close folds the WAL into the file
    seconds = time.monotonic() - started
    return Figures(rows, ledger_path(state).stat().st_size, seconds, commits)


@dataclass(frozen=True)
class RunCommits:
    objects: int
    commits: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.objects:,} small objects: {self.commits:,} ledger commits in the run "
            f"({self.commits / self.objects:.2f} per object), {self.seconds:,.1f} s"
        )


class _Recorder:
    """Stands in for `Ledger.open` and keeps the ledger a run opens."""

    def __init__(self) -> None:
        self.opened: list[Ledger] = []
        self._open = Ledger.open

    def __call__(self, state_dir: Path, base: Path) -> Ledger:
        ledger = self._open(state_dir, base)
        self.opened.append(ledger)
        return ledger


def small_objects_run(url: str, base: Path, count: int) -> RunCommits:
    """Drain `count` small objects (put here, into the emptied moto server at `url`)."""
    client: Any = s3_client(url)
    client.create_bucket(Bucket=BUCKET)
    with ThreadPoolExecutor(8) as pool:  # moto answers one request at a time per thread
        list(
            pool.map(
                lambda i: client.put_object(
                    Bucket=BUCKET, Key=f"{PREFIX}d{i % 20}/{i:06d}.csv", Body=f"{i},row\n" * 8
                ),
                range(count),
            )
        )
    settings = drain_settings(base, endpoint_url=url, workers=16, delete_flush_seconds=5.0)
    recorder = _Recorder()
    started = time.monotonic()
    with mock.patch.object(Ledger, "open", recorder):
        run = drain(settings, make_client(settings.s3))
    seconds = time.monotonic() - started
    if run.code != 0 or bucket_keys(client):
        raise AssertionError(f"the drain did not finish: exit {run.code}\n{run.err}")
    (ledger,) = recorder.opened
    return RunCommits(count, ledger.commits, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, help="where to build it (default: a temp folder)")
    parser.add_argument("--small-objects", type=int, metavar="N", help="drain N small objects")
    args = parser.parse_args(argv)
    if args.small_objects:
        with MotoServer() as server, tempfile.TemporaryDirectory() as folder:
            print(small_objects_run(server.url, Path(folder), args.small_objects))
        return
    if args.dir is not None:
        print(fill_ledger(args.dir, args.rows))
        return
    with tempfile.TemporaryDirectory() as folder:
        print(fill_ledger(Path(folder), args.rows))


if __name__ == "__main__":
    main()
