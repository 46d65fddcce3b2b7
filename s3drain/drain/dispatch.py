"""The main thread's loop: listing pages in, selected objects out to the worker pool, at most
2 x workers in flight (a semaphore taken before submit, released when the object is done), so
memory does not grow with the prefix."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.drain.context import Context
from s3drain.drain.select import limit_reached, selected, warn_unused_rules
from s3drain.drain.worker import handle
from s3drain.errors import AbortError, describe
from s3drain.local.paths import prefix_folder
from s3drain.s3.client import S3Client
from s3drain.s3.listing import list_pages, prefetch
from s3drain.s3.preflight import explain
from s3drain.s3.retry import RetryPolicy


def dispatch(ctx: Context, client: S3Client, retry: RetryPolicy) -> str | None:
    settings, reporter, state = ctx.settings, ctx.reporter, ctx.state
    folder = prefix_folder(settings.prefix)
    now = datetime.now(UTC)
    in_flight = threading.BoundedSemaphore(2 * settings.workers)
    taken = taken_bytes = pages_seen = 0
    stopped_early: str | None = None
    matched: set[int] = set()
    pages = prefetch(list_pages(client, settings.bucket, settings.prefix, retry), state.stop)
    with ThreadPoolExecutor(settings.workers, thread_name_prefix="s3drain-worker") as pool:
        try:
            for page in pages:
                pages_seen += 1
                reporter.listed(len(page))
                for record in page:
                    why = selected(settings, record, folder, now, matched)
                    if why is not None:
                        reporter.filtered(record, why)
                        continue
                    stopped_early = limit_reached(settings, taken, taken_bytes, record)
                    if stopped_early or not _acquire(in_flight, state.stop):
                        break
                    taken += 1
                    taken_bytes += record.size
                    future = pool.submit(handle, ctx, record)
                    future.add_done_callback(lambda _: in_flight.release())
                if stopped_early or state.stop.is_set():
                    break
            else:
                reporter.listing_finished()
                warn_unused_rules(settings, matched, reporter)
        except (ClientError, BotoCoreError) as exc:
            operation = "ListObjectsV2"
            if pages_seen == 0:
                state.fail(
                    explain(
                        exc,
                        bucket=settings.bucket,
                        operation=operation,
                        endpoint=settings.s3.endpoint_url,
                    )
                )
            else:
                state.fail(
                    AbortError(
                        f"listing failed after {pages_seen} pages: {describe(exc)}; objects not "
                        "yet listed stay in S3 for the next run"
                    )
                )
    return stopped_early


def _acquire(semaphore: threading.BoundedSemaphore, stop: threading.Event) -> bool:
    while not semaphore.acquire(timeout=0.2):
        if stop.is_set():
            return False
    if stop.is_set():
        semaphore.release()
        return False
    return True
