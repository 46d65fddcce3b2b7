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
from typing import TextIO

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import ExitCode, describe, http_status
from s3drain.ingest.bucket import ensure_bucket
from s3drain.ingest.digest import (
    Digest,
    Remote,
    UploadFailed,
    digest_file,
    file_md5,
    is_identical,
    part_size_for,
)
from s3drain.ingest.plan import Ignored, Layout, Planned, collect, plan, size_of, today_utc
from s3drain.ingest.settings import IngestSettings
from s3drain.ingest.upload import KeyTaken, Uploader
from s3drain.output import mask
from s3drain.s3.client import RequestCounter, S3Client, make_client
from s3drain.s3.retry import RetryPolicy
from s3drain.units import format_size


class Fate(StrEnum):
    UPLOADED = "uploaded"
    SKIPPED = "skipped"  # the same bytes are already at the key
    FAILED = "failed"  # nothing was left in S3; the next run tries again
    CONFLICT = "conflict"  # a different object is at the key: kept, this file not uploaded
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
        elif self.verbosity >= 1 or o.fate in (Fate.FAILED, Fate.REFUSED, Fate.CONFLICT):
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
            if not settings.overwrite:
                return _conflict(path, key, digest, f"a different object is at the key ({how})")
            replaced = f"replaced a different object ({how}, --overwrite)"
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        done = uploader.put(key, path, digest, mime, exclusive=not settings.overwrite)
    except KeyTaken:
        return _conflict(path, key, digest, "an object appeared at the key during the upload")
    except UploadFailed as exc:
        return FileOutcome(path, key, Fate.FAILED, size, str(exc))
    except (ClientError, BotoCoreError, OSError) as exc:
        return FileOutcome(path, key, Fate.FAILED, size, describe(exc))
    how = f"{done.parts} parts, crc32" if done.parts else "crc32"
    detail = f"{how}; {replaced}" if replaced else how
    return FileOutcome(path, key, Fate.UPLOADED, digest.size, detail, done.crc32, done.parts)


def _conflict(path: Path, key: str, digest: Digest, why: str) -> FileOutcome:
    detail = f"{why}; kept, this file not uploaded (--overwrite replaces it)"
    return FileOutcome(path, key, Fate.CONFLICT, digest.size, detail, digest.crc32)


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
        "S3 denied HeadObject (403): identical objects cannot be recognised, so each file is "
        "uploaded where no object is at its key yet (grant s3:GetObject to skip identical ones)"
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
    if any(o.fate in (Fate.FAILED, Fate.REFUSED, Fate.CONFLICT) for o in outcomes):
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
