"""Which listed objects this run takes, decided in one place: the shard, `--include/--exclude`,
`--min-age`, then the `--max-objects` and `--max-bytes` limits. The dispatcher, the dry run and
the `--max-delete` guard all walk the listing through the same `Selection`, so they cannot
disagree about which objects a run takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.drain.filters import skip_reason
from s3drain.drain.reporter import Reporter
from s3drain.drain.settings import DrainSettings
from s3drain.errors import DeleteGuardError
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_rows import Delivery
from s3drain.local.paths import Kind, Layout, MappedPath, look, prefix_folder
from s3drain.output import plural
from s3drain.records import ObjectRecord
from s3drain.s3.client import S3Client
from s3drain.s3.listing import list_pages
from s3drain.s3.preflight import explain
from s3drain.s3.retry import RetryPolicy


@dataclass
class Selection:
    """Walks the listing in key order, one record at a time: `filtered` says why a record is
    left out (None: taken, unless `stop` says the run takes no more)."""

    settings: DrainSettings
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    taken: int = 0
    taken_bytes: int = 0
    matched_rules: set[int] = field(default_factory=set)

    def filtered(self, record: ObjectRecord) -> str | None:
        folder = prefix_folder(self.settings.prefix)
        age = (self.now - record.last_modified).total_seconds()
        return skip_reason(
            record.key,
            record.key[len(folder) :],
            age,
            rules=self.settings.rules,
            min_age=self.settings.min_age,
            shard=self.settings.shard,
            matched=self.matched_rules,
        )

    def stop(self, record: ObjectRecord) -> str | None:
        """Why the run takes no more objects from here on (a limit), or None."""
        s = self.settings
        if s.max_objects is not None and self.taken >= s.max_objects:
            return f"--max-objects {s.max_objects:,} reached"
        if s.max_bytes is not None and self.taken and self.taken_bytes + record.size > s.max_bytes:
            return f"--max-bytes {s.max_bytes:,} reached"
        return None

    def take(self, record: ObjectRecord) -> None:
        self.taken += 1
        self.taken_bytes += record.size

    def warn_unused_rules(self, reporter: Reporter) -> None:
        for index, rule in enumerate(self.settings.rules):
            if index not in self.matched_rules:
                kind = "--include" if rule.include else "--exclude"
                reporter.warn(
                    f"{kind} {rule.pattern!r} matched no key: patterns match the path below the "
                    "prefix's folder ('*' stays in one folder, 'dir/**' takes a whole folder)"
                )


def delivered(record: ObjectRecord, rows: list[Delivery]) -> Delivery | None:
    """The ledger's row for exactly this object, if it was delivered."""
    return next((row for row in rows if row.is_of(record)), None)


def _would_delete(record: ObjectRecord, layout: Layout, ledger_rows: list[Delivery]) -> bool:
    """A cheap, cautious forecast: every taken object counts unless it certainly stays (its key
    is refused, or a file of another size sits at its destination)."""
    mapped = layout.map_key(record.key, record.size)
    if not isinstance(mapped, MappedPath):
        return False
    if delivered(record, ledger_rows) is not None:
        return True
    raw = look(mapped.raw)
    if raw.kind is Kind.FILE:
        return raw.size == record.size
    return raw.kind is Kind.MISSING


def guard_deletes(
    settings: DrainSettings,
    *,
    client: S3Client,
    layout: Layout,
    retry: RetryPolicy,
    reporter: Reporter,
    ledger: Ledger | None,
) -> None:
    """--max-delete: count what this run would delete before it touches anything."""
    selection = Selection(settings)
    would_delete = listed = 0
    try:
        for page in list_pages(client, settings.bucket, settings.prefix, retry):
            listed += len(page)
            rows = ledger.lookup(settings.bucket, [r.key for r in page]) if ledger else {}
            for record in page:
                if selection.filtered(record) is not None:
                    continue
                if selection.stop(record):
                    break
                selection.take(record)
                would_delete += _would_delete(record, layout, rows.get(record.key, []))
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
