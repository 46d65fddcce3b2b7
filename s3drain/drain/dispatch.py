"""The main thread's loop: listing pages in, selected objects out to the worker pool, at most
2 x workers in flight (a semaphore taken before submit, released when the object is done), so
memory does not grow with the prefix."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.drain.context import Context
from s3drain.drain.select import Selection, delivered
from s3drain.drain.worker import handle
from s3drain.errors import AbortError, S3DrainError, describe
from s3drain.s3.listing import list_pages, prefetch
from s3drain.s3.preflight import explain


def dispatch(ctx: Context) -> str | None:
    settings, reporter, state = ctx.settings, ctx.reporter, ctx.state
    selection = Selection(settings)
    in_flight = threading.BoundedSemaphore(2 * settings.workers)
    pages_seen = 0
    stopped_early: str | None = None
    pages = prefetch(
        list_pages(ctx.client, settings.bucket, settings.prefix, ctx.retry), state.stop
    )
    with ThreadPoolExecutor(settings.workers, thread_name_prefix="s3drain-worker") as pool:
        try:
            for page in pages:
                pages_seen += 1
                reporter.listed(len(page))
                # One ledger query per page, not per object.
                rows = (
                    ctx.ledger.lookup(settings.bucket, [r.key for r in page]) if ctx.ledger else {}
                )
                for record in page:
                    why = selection.filtered(record)
                    if why is not None:
                        reporter.filtered(record, why)
                        continue
                    stopped_early = selection.stop(record)
                    if stopped_early or not _acquire(in_flight, state.stop):
                        break
                    selection.take(record)
                    row = delivered(record, rows.get(record.key, []))
                    future = pool.submit(handle, ctx, record, row)
                    future.add_done_callback(lambda _: in_flight.release())
                if stopped_early or state.stop.is_set():
                    break
            else:
                reporter.listing_finished()
                selection.warn_unused_rules(reporter)
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
        except S3DrainError as exc:  # the ledger could not be read
            state.fail(exc)
        except Exception as exc:
            state.crashed(exc, "the listing")
    return stopped_early


def _acquire(semaphore: threading.BoundedSemaphore, stop: threading.Event) -> bool:
    while not semaphore.acquire(timeout=0.2):
        if stop.is_set():
            return False
    if stop.is_set():
        semaphore.release()
        return False
    return True
