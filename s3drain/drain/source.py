"""Where a run's objects come from, and who hears what became of each.

A drain lists its prefix (`listing`). `s3drain watch` feeds the same stages from S3's event
notifications instead, and settles each message once the objects it names have their outcome:
it hands in its own `Feed`. Either way the pages go through the same selection, ledger lookup,
workers, linker and deleter, and every object gets exactly one outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from s3drain.records import ObjectRecord, Outcome
from s3drain.s3.client import S3Client
from s3drain.s3.listing import ListCall, list_pages, prefetch
from s3drain.s3.retry import RetryPolicy

Pages = Iterator[list[ObjectRecord]]
# The run's client, its retry policy, its stop, and what sends a ListObjectsV2 in botocore's
# place where the run's requests go direct (`direct_listing.py`; None: the client does).
PageSource = Callable[[S3Client, RetryPolicy, threading.Event, ListCall | None], Pages]


@dataclass(frozen=True)
class Feed:
    pages: PageSource
    settled: Callable[[Outcome], None] | None = None  # each object's one outcome, as recorded
    passed_over: Callable[[ObjectRecord, str], None] | None = None  # left out by the filters
    # What a failing page source was doing, for the one-line error ("ListObjectsV2").
    operation: str = "ListObjectsV2"


def listing(bucket: str, prefix: str) -> Feed:
    """ListObjectsV2 pages of the prefix, two ahead in a thread (`s3/listing.py`)."""

    def pages(
        client: S3Client, retry: RetryPolicy, stop: threading.Event, call: ListCall | None
    ) -> Pages:
        return prefetch(list_pages(client, bucket, prefix, retry, call=call), stop)

    return Feed(pages)
