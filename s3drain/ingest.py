"""`s3drain ingest`: local files into `<layer>/<origin>/<format>/<spec>/YYYY/MM/DD/<file>`.

Which files and which keys is `ingest_plan.py`; how bytes reach S3 is `upload.py`. Here: the
bucket is made sure of (created when missing, refused when someone else's), then each file, in
a pool of `--workers` threads, is read once for its CRC32, compared with what S3 already has at
its key (skipped when identical), and uploaded. A file that fails leaves nothing in S3 and the
run goes on; any failed or refused file makes the exit code 1.

The date is the one given, or today in UTC taken once at the start, so a run crossing
midnight writes one date.
"""

from __future__ import annotations

import mimetypes
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.client import RequestCounter, S3Client, make_client
from s3drain.config import IngestSettings
from s3drain.errors import ConfigError, ExitCode, S3DrainError
from s3drain.ingest_plan import Ignored, Layout, Planned, collect, plan, size_of, today_utc
from s3drain.preflight import explain
from s3drain.report import dumps_json, mask
from s3drain.retry import RetryPolicy, describe, error_code, http_status
from s3drain.units import format_duration, format_size
from s3drain.upload import (
    Digest,
    Remote,
    Uploader,
    UploadFailed,
    digest_file,
    file_md5,
    is_identical,
    part_size_for,
)

# -- the bucket ----------------------------------------------------------------------------------


def ensure_bucket(client: S3Client, retry: RetryPolicy, bucket: str, endpoint: str | None) -> bool:
    """Make sure the bucket is there and ours; True when this call created it."""
    try:
        retry.run("HeadBucket", lambda: client.head_bucket(Bucket=bucket))
    except (ClientError, BotoCoreError) as exc:
        status = http_status(exc)
        if status == 403:
            raise _forbidden(client, bucket, endpoint) from None
        if status == 301:
            raise ConfigError(
                f"bucket {bucket!r} is in another region: set --region / AWS_REGION"
            ) from None
        if status != 404:
            raise explain(exc, bucket=bucket, operation="HeadBucket", endpoint=endpoint) from None
    else:
        return False
    region = client.meta.region_name
    params: dict[str, Any] = {"Bucket": bucket}
    # us-east-1 is the one region S3 refuses to be named in a LocationConstraint.
    if region and region not in ("us-east-1", "aws-global"):
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        retry.run("CreateBucket", lambda: client.create_bucket(**params))
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc)
        if code == "BucketAlreadyOwnedByYou":
            return False  # another run created it a moment ago
        if code == "BucketAlreadyExists":
            raise _not_ours(bucket, "BucketAlreadyExists on CreateBucket") from None
        raise explain(exc, bucket=bucket, operation="CreateBucket", endpoint=endpoint) from None
    return True


def _forbidden(client: S3Client, bucket: str, endpoint: str | None) -> S3DrainError:
    """HeadBucket's 403 has no body: one listing request tells a wrong key from a bucket that
    is not ours, so a typo in the secret is not reported as someone else's bucket."""
    try:
        client.list_objects_v2(Bucket=bucket, MaxKeys=0)
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in _CREDENTIAL_ERRORS:
            return explain(exc, bucket=bucket, operation="ListObjectsV2", endpoint=endpoint)
    return _not_ours(bucket, "403 on HeadBucket")


_CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "TokenRefreshRequired",
    }
)


def _not_ours(bucket: str, seen: str) -> ConfigError:
    return ConfigError(
        f"bucket {bucket!r} exists but belongs to another account, or these credentials lack "
        f"access to it ({seen}); nothing was uploaded",
        hint="bucket names are global: choose another --bucket, or get s3:ListBucket and "
        "s3:PutObject on it",
    )


# -- one run -------------------------------------------------------------------------------------


class Fate(StrEnum):
    UPLOADED = "uploaded"
    SKIPPED = "skipped"  # the same bytes are already at the key
    FAILED = "failed"  # nothing was left in S3; the next run tries again
    REFUSED = "refused"  # no safe key: not tried
    PLANNED = "planned"  # --dry-run


@dataclass(frozen=True)
class FileOutcome:
    path: Path
    key: str | None
    fate: Fate
    size: int
    detail: str = ""
    crc32: str | None = None
    parts: int = 0


@dataclass(frozen=True)
class IngestResult:
    exit_code: ExitCode
    day: date
    outcomes: tuple[FileOutcome, ...]
    ignored: tuple[Ignored, ...]
    seconds: float
    bucket_created: bool = False
    not_started: int = 0
    retries: int = 0
    requests: dict[str, int] = field(default_factory=dict)

    def count(self, fate: Fate) -> int:
        return sum(1 for o in self.outcomes if o.fate is fate)


class _Output:
    """Lines from many threads, whole and masked."""

    def __init__(self, settings: IngestSettings, out: TextIO, err: TextIO) -> None:
        self.verbosity = settings.verbosity
        self._plain = err if settings.json_summary else out
        self._err = err
        self._secrets = settings.s3.secrets()
        self._lock = threading.Lock()
        self.retries = 0
        self._warned: set[str] = set()

    def line(self, text: str, *, to_err: bool = True) -> None:
        with self._lock:
            stream = self._err if to_err else self._plain
            stream.write(mask(text, self._secrets) + "\n")
            stream.flush()

    def outcome(self, o: FileOutcome) -> None:
        where = f" -> {o.key}" if o.key else ""
        why = f": {o.detail}" if o.detail else ""
        if o.fate is Fate.PLANNED:
            self.line(f"would upload {o.path}{where} ({format_size(o.size)})", to_err=False)
        elif self.verbosity >= 1 or o.fate in (Fate.FAILED, Fate.REFUSED):
            self.line(f"{o.fate.value:<9} {o.path}{where} ({format_size(o.size)}){why}")

    def warn_once(self, message: str) -> None:
        with self._lock:
            if message in self._warned:
                return
            self._warned.add(message)
        self.line(f"s3drain: warning: {message}")

    def retrying(self, what: str, exc: BaseException, attempt: int) -> None:
        with self._lock:
            self.retries += 1
        if self.verbosity >= 2:
            self.line(f"retry     {what} after attempt {attempt}: {describe(exc)}")


def run_ingest(
    settings: IngestSettings,
    *,
    out: TextIO,
    err: TextIO,
    client: S3Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    today: Callable[[], date] = today_utc,
    stop: threading.Event | None = None,
) -> IngestResult:
    """One run. Raises S3DrainError only before anything was uploaded (a path that does not
    exist, a bucket that is not ours, S3 unreachable); later failures are per file."""
    started = time.monotonic()
    stop = stop or threading.Event()
    output = _Output(settings, out, err)
    layout = Layout(
        settings.layer, settings.origin, settings.spec, settings.format, settings.date or today()
    )
    files, ignored = collect(settings.paths)
    for left_out in ignored:
        if output.verbosity >= 1:
            output.line(f"ignored   {left_out.path}: {left_out.why}")
    planned = plan(files, layout)
    # A dry run sends nothing, and neither does a run with nothing that could go up: no bucket
    # is created for it.
    if settings.dry_run or not any(item.key for item in planned):
        outcomes = [_dry(item) for item in planned]
        for outcome in outcomes:
            output.outcome(outcome)
        return _result(
            day=layout.day,
            outcomes=outcomes,
            ignored=ignored,
            started=started,
            output=output,
            counter=RequestCounter(),
        )
    counter = RequestCounter()
    if client is None:
        client = make_client(settings.s3, counter)
    else:
        client.meta.events.register("before-send.s3", counter.on_send)
    retry = RetryPolicy(
        max_attempts=settings.s3.max_attempts,
        sleep=sleep,
        on_retry=output.retrying,
        stop_event=stop,
    )
    created = ensure_bucket(client, retry, settings.bucket, settings.s3.endpoint_url)
    # Files pool inside the parts pool: it is shut down first, so no file is left without
    # the pool its parts go to.
    with (
        ThreadPoolExecutor(settings.workers, thread_name_prefix="s3drain-part") as parts_pool,
        ThreadPoolExecutor(settings.workers, thread_name_prefix="s3drain-file") as files_pool,
    ):
        uploader = Uploader(client, retry, settings.bucket, parts_pool)
        futures = [
            files_pool.submit(_ingest_one, item, settings, uploader, output, stop)
            for item in planned
        ]
        results = [future.result() for future in futures]
    outcomes = [o for o in results if o is not None]
    return _result(
        day=layout.day,
        outcomes=outcomes,
        ignored=ignored,
        started=started,
        output=output,
        counter=counter,
        created=created,
        not_started=len(planned) - len(outcomes),
    )


def _dry(item: Planned) -> FileOutcome:
    if item.refused is not None:
        return FileOutcome(item.path, None, Fate.REFUSED, item.size, item.refused)
    return FileOutcome(item.path, item.key, Fate.PLANNED, item.size)


def _ingest_one(
    item: Planned,
    settings: IngestSettings,
    uploader: Uploader,
    output: _Output,
    stop: threading.Event,
) -> FileOutcome | None:
    if stop.is_set():
        return None
    if item.key is None:
        outcome = FileOutcome(item.path, None, Fate.REFUSED, item.size, item.refused or "")
    else:
        outcome = _upload(item.path, item.key, settings, uploader, output)
    output.outcome(outcome)
    return outcome


def _upload(
    path: Path, key: str, settings: IngestSettings, uploader: Uploader, output: _Output
) -> FileOutcome:
    size = size_of(path)
    try:
        digest = _read(path, settings)
        remote = _existing(uploader, key, output)
        replaced = ""
        if remote is not None:
            same, how = is_identical(digest, remote, lambda: file_md5(path))
            if same:
                detail = f"already there, identical ({how})"
                return FileOutcome(path, key, Fate.SKIPPED, digest.size, detail, digest.crc32)
            replaced = f"replaced a different object ({how})"
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        done = uploader.put(key, path, digest, mime)
    except UploadFailed as exc:
        return FileOutcome(path, key, Fate.FAILED, size, str(exc))
    except (ClientError, BotoCoreError, OSError) as exc:
        return FileOutcome(path, key, Fate.FAILED, size, describe(exc))
    how = f"{done.parts} parts, crc32" if done.parts else "crc32"
    detail = f"{how}; {replaced}" if replaced else how
    return FileOutcome(path, key, Fate.UPLOADED, digest.size, detail, done.crc32, done.parts)


def _read(path: Path, settings: IngestSettings) -> Digest:
    before = path.stat()
    size = before.st_size
    # A file that fits in one part gains nothing from the three requests of a multipart upload.
    multipart = size >= settings.multipart_threshold and size > settings.part_size
    part_size = part_size_for(size, settings.part_size) if multipart else 0
    digest = digest_file(path, part_size)
    after = path.stat()
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise UploadFailed("the file changed while it was read (still being written?)")
    return digest


def _existing(uploader: Uploader, key: str, output: _Output) -> Remote | None:
    try:
        return uploader.head(key)
    except ClientError as exc:
        if http_status(exc) != 403:
            raise
    # Write-only credentials are common for ingestion: upload without the identical check.
    output.warn_once(
        "S3 denied HeadObject (403): identical objects cannot be recognised, every file is "
        "uploaded (grant s3:GetObject to skip them)"
    )
    return None


def _result(
    *,
    day: date,
    outcomes: Sequence[FileOutcome],
    ignored: Sequence[Ignored],
    started: float,
    output: _Output,
    counter: RequestCounter,
    created: bool = False,
    not_started: int = 0,
) -> IngestResult:
    code = ExitCode.OK
    if any(o.fate in (Fate.FAILED, Fate.REFUSED) for o in outcomes):
        code = ExitCode.PARTIAL
    if not_started:
        code = ExitCode.INTERRUPTED
    return IngestResult(
        exit_code=code,
        day=day,
        outcomes=tuple(outcomes),
        ignored=tuple(ignored),
        seconds=time.monotonic() - started,
        bucket_created=created,
        not_started=not_started,
        retries=output.retries,
        requests=counter.snapshot(),
    )


# -- what the user sees at the end ---------------------------------------------------------------


def run_ingest_command(
    settings: IngestSettings, *, out: TextIO, err: TextIO, stop: threading.Event | None = None
) -> int:
    secrets = settings.s3.secrets()
    try:
        result = run_ingest(settings, out=out, err=err, stop=stop)
    except S3DrainError as exc:
        err.write(mask(f"s3drain: error: {exc.message}\n", secrets))
        if exc.hint:
            err.write(mask(f"s3drain: hint: {exc.hint}\n", secrets))
        if settings.json_summary:
            empty = IngestResult(exc.exit_code, settings.date or today_utc(), (), (), 0.0)
            out.write(mask(dumps_json(summary_json(settings, empty, exc.message)), secrets) + "\n")
        return int(exc.exit_code)
    if settings.json_summary:
        out.write(mask(dumps_json(summary_json(settings, result)), secrets) + "\n")
    elif settings.verbosity >= 0:
        out.write(mask(render_summary(settings, result), secrets) + "\n")
    out.flush()
    return int(result.exit_code)


_FATES = {
    Fate.UPLOADED: "sent with the CRC32 read here, which S3 checks",
    Fate.SKIPPED: "already in S3, identical",
    Fate.FAILED: "failed after retries; nothing left in S3, run again",
    Fate.REFUSED: "no safe key, not tried (see above)",
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
    bad = result.count(Fate.FAILED) + result.count(Fate.REFUSED)
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
