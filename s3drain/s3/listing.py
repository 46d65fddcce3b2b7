"""Pages of the prefix as small frozen records. Decides nothing.

ListObjectsV2, 1000 keys a page, following the continuation token to the end. In a versioned
bucket too: the current versions are the objects, and listing versions would page through every
delete marker earlier drains left. A background thread fetches the next page while the workers
drain this one; the queue holds at most `depth` pages, so memory stays flat however many keys
the prefix holds.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from s3drain.records import ObjectRecord
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy

PAGE_SIZE = 1000

# What sends one ListObjectsV2 (`client.list_objects_v2`'s parameters, botocore's answer).
ListCall = Callable[..., Mapping[str, Any]]


def _record(entry: Mapping[str, Any], version_id: str | None = None) -> ObjectRecord:
    return ObjectRecord(
        key=entry["Key"],
        size=int(entry.get("Size", 0)),
        etag=str(entry.get("ETag", "")).strip('"'),
        last_modified=entry["LastModified"],
        version_id=version_id,
        storage_class=entry.get("StorageClass"),
    )


def list_pages(
    client: S3Client,
    bucket: str,
    prefix: str,
    retry: RetryPolicy,
    *,
    page_size: int = PAGE_SIZE,
    call: ListCall | None = None,
) -> Iterator[list[ObjectRecord]]:
    """`call`: what sends each ListObjectsV2 in place of `client.list_objects_v2`, with its
    parameters and botocore's answer (the run's direct requests, `drain/direct_listing.py`)."""
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
    send = call or client.list_objects_v2

    def fetch() -> Mapping[str, Any]:
        return send(**params)

    while True:
        page = retry.run(f"ListObjectsV2 s3://{bucket}/{prefix}", fetch)
        yield [_record(entry) for entry in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
        params["ContinuationToken"] = token


_END = object()


def prefetch(
    pages: Iterator[list[ObjectRecord]], stop: threading.Event, depth: int = 2
) -> Iterator[list[ObjectRecord]]:
    """Run `pages` in a background thread, `depth` pages ahead. Errors re-raise in the caller."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    done = threading.Event()

    def put(item: object) -> bool:
        while not done.is_set():
            try:
                slots.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            for page in pages:
                if stop.is_set() or not put(page):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="s3drain-lister", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = slots.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        done.set()
        thread.join(timeout=5)
