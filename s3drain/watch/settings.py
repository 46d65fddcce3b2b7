"""`s3drain watch`'s settings: a drain's, the queue's, and when to list the prefix as well."""

from __future__ import annotations

from dataclasses import dataclass, replace

from s3drain.config.sources import Sources, optional, positive_duration
from s3drain.config.sqs import SqsSettings, load_sqs_settings
from s3drain.drain.settings import DrainSettings, load_drain_settings
from s3drain.errors import ConfigError

DEFAULT_RECONCILE = 3600.0
# A run batches deletes for up to 5 s after the first; a watcher's messages wait for those
# deletes, so it sends them sooner (a trickle of events makes batches of a few keys).
DELETE_FLUSH_SECONDS = 0.5
# With --once a long poll is the wait before "the queue is empty" can be believed.
ONCE_WAIT_SECONDS = 1


@dataclass(frozen=True)
class WatchSettings:
    drain: DrainSettings
    sqs: SqsSettings
    queue_url: str
    reconcile: float  # seconds between listing passes; 0: none (not even at start)
    once: bool = False


def load_watch_settings(sources: Sources) -> WatchSettings:
    drain = load_drain_settings(sources)
    if drain.dry_run:
        raise ConfigError(
            "watch has no dry run: it would take messages off the queue without settling them",
            hint="'s3drain drain --dry-run' with the same settings shows what a run would do",
        )
    if drain.lanes is not None and drain.lanes > 1:
        raise ConfigError(
            f"watch runs in one process: --lanes {drain.lanes} is for drains",
            hint="leave --lanes out (or set it to 1 or auto) for the watcher",
        )
    sqs = load_sqs_settings(sources, drain.s3)
    queue_url = sqs.queue_url
    if queue_url is None:
        raise ConfigError(
            f"no queue to watch: {sources.describe('queue_url')}",
            hint="'s3drain events setup' creates the queue and prints its URL",
        )
    once = bool(sources.flags.get("once"))
    if once and sources.get("sqs_wait_seconds") is None:
        sqs = replace(sqs, wait_seconds=min(sqs.wait_seconds, ONCE_WAIT_SECONDS))
    # A message is held until its object is placed, deleted from S3 (batched, half a second
    # after the first) and the message deleted: on a burst, the receivers must keep a few
    # batches' worth in hand or they starve the workers (256 held made 45 objects/s on moto).
    sqs = replace(sqs, max_in_flight=max(sqs.max_in_flight, 16 * drain.workers))
    drain = replace(
        drain, delete_flush_seconds=min(drain.delete_flush_seconds, DELETE_FLUSH_SECONDS)
    )
    return WatchSettings(
        drain=drain,
        sqs=sqs,
        queue_url=queue_url,
        reconcile=optional(sources, "reconcile", positive_duration, DEFAULT_RECONCILE),
        once=once,
    )
