"""What an ingest run ends with: the human summary and the `--json` object (schema 1)."""

from __future__ import annotations

from typing import Any

from s3drain.ingest.run import Fate, IngestResult
from s3drain.ingest.settings import IngestSettings
from s3drain.units import format_duration, format_size

_FATES = {
    Fate.UPLOADED: "sent with the CRC32 read here, which S3 checks",
    Fate.SKIPPED: "already in S3, identical",
    Fate.FAILED: "failed after retries; nothing left in S3, run again",
    Fate.REFUSED: "no safe key, not tried (see above)",
    Fate.CONFLICT: "a different object is at the key: kept (--overwrite replaces it)",
    Fate.PLANNED: "would be uploaded (dry run)",
}


def render_summary(settings: IngestSettings, result: IngestResult) -> str:
    mode = " (dry run: nothing was changed)" if settings.dry_run else ""
    files = len(result.outcomes) + result.not_started
    lines = [
        f"s3drain ingest: {files:,} files -> {_destination(settings, result)}{mode} "
        f"in {format_duration(result.seconds)}"
    ]
    for fate in Fate:
        chosen = [o for o in result.outcomes if o.fate is fate]
        if chosen or fate is (Fate.PLANNED if settings.dry_run else Fate.UPLOADED):
            size = format_size(sum(o.size for o in chosen))
            lines.append(f"  {fate.value:<9}{len(chosen):>8,}  {size:>10}  {_FATES[fate]}")
    if result.ignored:
        lines.append(
            f"  {'ignored':<9}{len(result.ignored):>8,}  {'':>10}  hidden or special files in "
            "the folders (-v lists them)"
        )
    if result.bucket_created:
        lines.append(f"  bucket {settings.bucket} was created")
    if result.requests:
        by_op = ", ".join(f"{op} {n:,}" for op, n in sorted(result.requests.items()))
        total = sum(result.requests.values())
        lines.append(f"  requests {total:,} ({by_op}); retries {result.retries:,}")
    if result.not_started:
        lines.append(f"  stopped early: {result.not_started:,} files not started")
    bad = result.count(Fate.FAILED) + result.count(Fate.REFUSED) + result.count(Fate.CONFLICT)
    verdict = f"{bad:,} files not in S3, see above" if bad else "ok"
    lines.append(f"result: {verdict} (exit {int(result.exit_code)})")
    return "\n".join(lines)


def _destination(settings: IngestSettings, result: IngestResult) -> str:
    folders = {o.key.rpartition("/")[0] for o in result.outcomes if o.key}
    if len(folders) == 1:
        return f"s3://{settings.bucket}/{folders.pop()}/"
    fmt = settings.format or "<FORMAT>"
    day = result.day
    return (
        f"s3://{settings.bucket}/{settings.layer}/{settings.origin}/{fmt}/{settings.spec}/"
        f"{day.year:04d}/{day.month:02d}/{day.day:02d}/"
    )


def summary_json(
    settings: IngestSettings, result: IngestResult, error: str | None = None
) -> dict[str, Any]:
    """The machine-readable summary of `ingest --json` (schema 1)."""
    return {
        "schema": 1,
        "command": "ingest",
        "bucket": settings.bucket,
        "date": result.day.isoformat(),
        "dry_run": settings.dry_run,
        "exit_code": int(result.exit_code),
        "error": error,
        "seconds": round(result.seconds, 3),
        "bucket_created": result.bucket_created,
        "files": {fate.value: result.count(fate) for fate in Fate},
        "not_started": result.not_started,
        "ignored": len(result.ignored),
        "bytes_uploaded": sum(o.size for o in result.outcomes if o.fate is Fate.UPLOADED),
        "retries": result.retries,
        "requests": {"total": sum(result.requests.values()), "by_operation": result.requests},
        "results": [
            {
                "path": str(o.path),
                "key": o.key,
                "status": o.fate.value,
                "size": o.size,
                "crc32": o.crc32,
                "parts": o.parts,
                "detail": o.detail,
            }
            for o in result.outcomes
        ],
    }
