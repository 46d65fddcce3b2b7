"""Which listed objects this run takes: the filters, the shard, --min-age, the --max-objects and
--max-bytes limits, and the --max-delete guard that counts before anything changes."""

from __future__ import annotations

from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.drain.decide import Action, decide
from s3drain.drain.filters import skip_reason
from s3drain.drain.reporter import Reporter
from s3drain.drain.settings import DrainSettings
from s3drain.errors import DeleteGuardError
from s3drain.local.paths import Layout, MappedPath, look, prefix_folder
from s3drain.output import plural
from s3drain.records import ObjectRecord
from s3drain.s3.client import S3Client
from s3drain.s3.listing import list_pages
from s3drain.s3.preflight import explain
from s3drain.s3.retry import RetryPolicy


def selected(
    settings: DrainSettings,
    record: ObjectRecord,
    folder: str,
    now: datetime,
    matched: set[int] | None = None,
) -> str | None:
    age = (now - record.last_modified).total_seconds()
    return skip_reason(
        record.key,
        record.key[len(folder) :],
        age,
        rules=settings.rules,
        min_age=settings.min_age,
        shard=settings.shard,
        matched=matched,
    )


def warn_unused_rules(settings: DrainSettings, matched: set[int], reporter: Reporter) -> None:
    for index, rule in enumerate(settings.rules):
        if index not in matched:
            kind = "--include" if rule.include else "--exclude"
            reporter.warn(
                f"{kind} {rule.pattern!r} matched no key: patterns match the path below the "
                "prefix's folder ('*' stays in one folder, 'dir/**' takes a whole folder)"
            )


def limit_reached(
    settings: DrainSettings, taken: int, taken_bytes: int, record: ObjectRecord
) -> str | None:
    if settings.max_objects is not None and taken >= settings.max_objects:
        return f"--max-objects {settings.max_objects:,} reached"
    if settings.max_bytes is not None and taken and taken_bytes + record.size > settings.max_bytes:
        return f"--max-bytes {settings.max_bytes:,} reached"
    return None


def guard_deletes(
    settings: DrainSettings,
    client: S3Client,
    layout: Layout,
    retry: RetryPolicy,
    reporter: Reporter,
) -> None:
    """--max-delete: count what this run would delete before it touches anything."""
    folder = prefix_folder(settings.prefix)
    now = datetime.now(UTC)
    would_delete = taken = taken_bytes = listed = 0
    try:
        for page in list_pages(client, settings.bucket, settings.prefix, retry):
            listed += len(page)
            for record in page:
                if selected(settings, record, folder, now) is not None:
                    continue
                if limit_reached(settings, taken, taken_bytes, record):
                    break
                taken += 1
                taken_bytes += record.size
                mapped = layout.map_key(record.key, record.size)
                raw = processed = None
                if isinstance(mapped, MappedPath):
                    processed = look(mapped.processed, expect_size=record.size, want_md5=False)
                    raw = look(mapped.raw, expect_size=record.size, want_md5=False)
                action = decide(record, mapped, raw, processed, "size").action
                if action in (Action.PROCESSED, Action.PRESENT, Action.DOWNLOAD):
                    would_delete += 1
    except (ClientError, BotoCoreError) as exc:
        raise explain(
            exc,
            bucket=settings.bucket,
            operation="ListObjectsV2",
            endpoint=settings.s3.endpoint_url,
        ) from None
    assert settings.max_delete is not None
    if would_delete > settings.max_delete:
        reporter.listed(listed)  # what the guard saw is what the summary reports
        raise guard_error(would_delete, settings.max_delete)


def guard_error(would_delete: int, max_delete: int) -> DeleteGuardError:
    return DeleteGuardError(
        f"this run would delete {plural(would_delete, 'object')}, more than --max-delete "
        f"{max_delete:,}; nothing was downloaded or deleted",
        hint="check --prefix, or raise --max-delete if that many is right",
    )
