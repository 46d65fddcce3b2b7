"""The listing streams: memory does not grow with the number of keys under the prefix.

A stub client makes up ListObjectsV2 pages as they are asked for, so a prefix of any size costs
the test nothing to fill; a dry run takes every key through listing, dispatch, the workers and
the reporter. Peak traced memory for five times the keys must stay about the same.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from s3drain.drain.run import run_drain
from s3drain.errors import ExitCode
from s3drain.records import ObjectRecord
from s3drain.s3.client import S3Client
from s3drain.s3.listing import prefetch
from tests.support.drainkit import drain_settings

UPLOADED = datetime(2024, 1, 1, tzinfo=UTC)


class _Events:
    def register(self, *_: object, **__: object) -> None:
        return None


class _Meta:
    events = _Events()


class SyntheticPrefix:
    """Just enough of a botocore S3 client for a dry run over `keys` made-up objects."""

    meta = _Meta()

    def __init__(self, keys: int) -> None:
        self.keys = keys
        self.pages_served = 0

    def get_bucket_versioning(self, **_: Any) -> dict[str, Any]:
        return {}

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        start = int(params.get("ContinuationToken", "0"))
        stop = min(start + int(params["MaxKeys"]), self.keys)
        self.pages_served += 1
        contents = [
            {
                "Key": f"{params['Prefix']}day-{i // 1000:04d}/batch-{i:08d}.csv",
                "Size": 4096,
                "ETag": '"0123456789abcdef0123456789abcdef"',
                "LastModified": UPLOADED,
            }
            for i in range(start, stop)
        ]
        page: dict[str, Any] = {"Contents": contents, "IsTruncated": stop < self.keys}
        if stop < self.keys:
            page["NextContinuationToken"] = str(stop)
        return page


def _peak_bytes_of_dry_run(tmp_path: Path, keys: int) -> int:
    settings = drain_settings(tmp_path / f"base-{keys}", dry_run=True, workers=8)
    client = SyntheticPrefix(keys)
    with open(os.devnull, "w", encoding="utf-8") as sink:
        tracemalloc.start()
        try:
            result = run_drain(settings, out=sink, err=sink, client=cast(S3Client, client))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.exit_code == ExitCode.OK, result.info.error
    assert result.totals.listed == keys
    assert result.totals.counts.get("downloaded") == keys  # what a real run would do
    assert client.pages_served == -(-keys // 1000)
    return peak


def test_memory_does_not_grow_with_the_number_of_keys(tmp_path: Path) -> None:
    small = _peak_bytes_of_dry_run(tmp_path, 5_000)
    large = _peak_bytes_of_dry_run(tmp_path, 25_000)
    # Five times the keys, both enough for the pages in flight to reach their bound. A run
    # that kept its records (20,000 more, a few hundred bytes each) would add megabytes.
    assert large < small + 1024 * 1024, (small, large)


def _page(number: int) -> list[ObjectRecord]:
    return [ObjectRecord(key=f"k{number}", size=0, etag="", last_modified=UPLOADED)]


def test_prefetch_runs_at_most_depth_pages_ahead() -> None:
    produced: list[int] = []

    def pages() -> Iterator[list[ObjectRecord]]:
        for number in range(100):
            produced.append(number)
            yield _page(number)

    consumed = 0
    for page in prefetch(pages(), threading.Event(), depth=2):
        consumed += 1
        time.sleep(0.02)  # a slow consumer: the lister must wait for it
        # depth pages queued, plus the one the lister holds while it waits for room
        assert len(produced) <= consumed + 3, (consumed, len(produced))
        assert page == _page(consumed - 1)
    assert consumed == 100


def test_prefetch_hands_a_listing_error_to_the_consumer() -> None:
    def pages() -> Iterator[list[ObjectRecord]]:
        yield _page(1)
        raise RuntimeError("listing broke")

    taken: list[list[ObjectRecord]] = []
    with pytest.raises(RuntimeError, match="listing broke"):
        for page in prefetch(pages(), threading.Event()):
            taken.append(page)
    assert taken == [_page(1)]
