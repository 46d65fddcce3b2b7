"""Regression tests for issue 13's list, in one process (moto's mock_aws): a thread that dies
neither hangs the run nor leaves an object downloaded but neither deleted nor reported;
--max-delete and --max-bytes agree between the dry run, the guard and the real run; a file the
ETL moves during the delete wait fails only its own object; a run halted after deletes says
what had changed; recovery reports a 412 as `changed`, never deleted; an ingested multipart
object (full-object CRC32) fetched in ranges is verified by its CRC32."""

from __future__ import annotations

import base64
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from s3drain.drain.deleter import Deleter
from s3drain.drain.fanout import FixedStreams
from s3drain.drain.settings import DrainSettings
from s3drain.errors import ExitCode
from s3drain.local.fs import LocalFS
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_rows import NewDelivery
from s3drain.output import plural
from s3drain.records import FileId, ObjectRecord
from s3drain.s3.client import S3Client
from tests.support import moto_aws_like
from tests.support.drainkit import (
    BUCKET,
    PREFIX,
    Call,
    RunOutput,
    audit_lines,
    bucket_keys,
    drain,
    drain_settings,
    error_response,
    header,
    inject,
    is_probe,
    local_tree,
    md5,
    mock_aws,
    new_client,
    place_copy,
    put_objects,
)
from tests.support.seamtrial import thread_stacks
from tests.test_ingest import ingest, settings_for

MiB = 1024 * 1024


@pytest.fixture
def s3mem() -> Iterator[S3Client]:
    with mock_aws():
        yield new_client()


@pytest.fixture
def s3aws() -> Iterator[S3Client]:
    """Batched deletes (etag-batch): moto made to honour DeleteObjects' per-key ETag."""
    with mock_aws(), moto_aws_like.patched():
        yield new_client()


def drain_bounded(
    settings: DrainSettings,
    client: S3Client,
    fs: LocalFS | None = None,
    streams: FixedStreams | None = None,
    bound: float = 60.0,
) -> RunOutput:
    """`drain` in a thread of its own: a run that has not ended after `bound` s fails the test
    with every thread's stack."""
    box: list[RunOutput] = []

    def target() -> None:
        box.append(drain(settings, client, fs, streams=streams))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound)
    if thread.is_alive():
        pytest.fail(f"the run did not end within {bound:.0f} s\n{thread_stacks()}")
    assert box, "the run raised instead of returning"
    return box[0]


def lines_by_key(settings: DrainSettings) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for line in audit_lines(settings):
        found.setdefault(line["key"], []).append(line)
    return found


# -- a thread that dies ------------------------------------------------------------------------


@pytest.mark.parametrize("dies", ["at its first batch", "at its second batch", "mid-batch"])
def test_a_deleter_that_dies_neither_hangs_nor_leaves_an_object_unreported(
    tmp_path: Path, s3aws: S3Client, monkeypatch: pytest.MonkeyPatch, dies: str
) -> None:
    """The deleter's flush raises (a bug) as a batch begins, or after S3 answered a batch and
    half its lines were written: the run ends, exit 70; every object the run took has exactly
    one line that tells the truth (deleted only if it left S3); one without a line is in S3
    and was never downloaded. More batches than the deleter has on their way at once, so some
    are still to be sent when the bug comes."""
    objects = {f"{PREFIX}{i:02d}.csv": os.urandom(100 + i) for i in range(12 * 5)}
    put_objects(s3aws, objects)
    settings = drain_settings(tmp_path, workers=2, delete_batch_size=5)
    calls = iter(range(1, 10**6))
    if dies == "mid-batch":
        real_record_all = Deleter._record_all

        def record_all(self: Deleter, outcomes: Sequence[Any]) -> bool:
            if not any(o.deleted for o in outcomes) or next(calls) > 1:
                return real_record_all(self, outcomes)
            real_record_all(self, outcomes[: len(outcomes) // 2])
            raise RuntimeError("a bug in the deleter (injected)")

        monkeypatch.setattr(Deleter, "_record_all", record_all)
    else:
        real_flush = Deleter._flush
        dies_at = 1 if "first" in dies else 2

        def flush(self: Deleter, batch: list[Any]) -> None:
            if next(calls) == dies_at:
                raise RuntimeError("a bug in the deleter (injected)")
            real_flush(self, batch)

        monkeypatch.setattr(Deleter, "_flush", flush)
    run = drain_bounded(settings, s3aws)
    monkeypatch.undo()

    assert run.code == ExitCode.INTERNAL, run.err
    left = bucket_keys(s3aws)
    lines = lines_by_key(settings)
    downloaded = set(local_tree(settings.raw_dir))
    for key in objects:
        if key not in lines:  # never started: the run stopped first
            assert key in left and key[len(PREFIX) :] not in downloaded, key
            continue
        assert len(lines[key]) == 1, lines[key]
        (line,) = lines[key]
        assert line["deleted"] is (key not in left), line
    assert {k[len(PREFIX) :] for k in objects if k not in left} <= downloaded
    assert left, "the bug came before every batch was sent"
    assert run.result.totals.deleted == len(objects) - len(left)

    again = drain_bounded(settings, s3aws)
    assert again.code == ExitCode.OK, again.err
    assert bucket_keys(s3aws) == set()
    assert local_tree(settings.raw_dir) == {k[len(PREFIX) :]: v for k, v in objects.items()}
    deleted = sorted(line["key"] for line in audit_lines(settings) if line["deleted"])
    assert deleted == sorted(objects)


# -- --max-delete and --max-bytes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_bytes", "taken"),
    [(100, 1), (1000, 1), (1300, 2), (1800, 3), (10_000, 5)],
)
def test_max_delete_and_max_bytes_agree_between_dry_run_guard_and_real_run(
    tmp_path: Path, s3mem: S3Client, max_bytes: int, taken: int
) -> None:
    """Five objects of 600 bytes: --max-bytes takes `taken` of them (always at least one). The
    dry run would delete that many, the guard counts that many, and the real run deletes that
    many. (The old bug: the dry run took 1 object, the real run said "would delete 2".)"""
    objects = {f"{PREFIX}k{i}.csv": os.urandom(600) for i in range(5)}
    put_objects(s3mem, objects)
    would = f"would delete {plural(taken, 'object')}, more than --max-delete {taken - 1}"

    def settings(name: str, **more: Any) -> DrainSettings:
        return drain_settings(tmp_path / name, max_bytes=max_bytes, **more)

    dry_ok = drain(settings("dry-ok", dry_run=True, max_delete=taken), s3mem)
    assert dry_ok.code == ExitCode.OK, dry_ok.result.info.error
    assert dry_ok.count("downloaded") == taken

    dry_over = drain(settings("dry-over", dry_run=True, max_delete=taken - 1), s3mem)
    assert dry_over.code == ExitCode.DELETE_GUARD
    assert would in (dry_over.result.info.error or "")

    guarded = drain(settings("guarded", max_delete=taken - 1), s3mem)
    assert guarded.code == ExitCode.DELETE_GUARD
    assert would in (guarded.result.info.error or "")
    assert bucket_keys(s3mem) == set(objects)

    real = drain(settings("real", max_delete=taken), s3mem)
    assert real.code == ExitCode.OK, real.result.info.error
    assert real.result.totals.deleted == taken
    assert bucket_keys(s3mem) == set(sorted(objects)[taken:])


# -- a file the ETL moves during the delete wait -----------------------------------------------


class EtlMoves(LocalFS):
    """The ETL moves one processed file away right before its delete is made durable."""

    def __init__(self, victim: Path, to: Path) -> None:
        super().__init__()
        self.victim, self.to = victim, to

    def fsync_file(self, path: str, expect: FileId) -> None:
        if path == str(self.victim) and self.victim.exists():
            self.to.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.victim, self.to)
        super().fsync_file(path, expect)


def test_a_file_the_etl_moves_during_the_delete_wait_fails_only_its_own_object(
    tmp_path: Path, s3aws: S3Client
) -> None:
    objects = {f"{PREFIX}p{i}.csv": os.urandom(300 + i) for i in range(6)}
    put_objects(s3aws, objects)
    settings = drain_settings(tmp_path, delete_flush_seconds=600)  # one batch, at the end
    for key, data in objects.items():
        place_copy(settings.processed_dir / key[len(PREFIX) :], data)
    moved_key = f"{PREFIX}p3.csv"
    batches: list[str] = []

    def note(operation: str, call: Call) -> None:
        if operation == "DeleteObjects" and not is_probe(call):
            body = call.params.get("body", b"")
            batches.append(body.decode() if isinstance(body, bytes) else str(body))

    inject(s3aws, note)
    victim = settings.processed_dir / "p3.csv"
    run = drain_bounded(settings, s3aws, EtlMoves(victim, tmp_path / "etl" / "p3.csv"))

    assert run.code == ExitCode.PARTIAL, run.err
    assert bucket_keys(s3aws) == {moved_key}
    lines = lines_by_key(settings)
    (moved,) = lines[moved_key]
    assert moved["status"] == "failed" and moved["deleted"] is False
    assert "moved or changed before its delete" in moved["detail"]
    assert all(lines[k][0]["deleted"] for k in objects if k != moved_key)
    assert len(batches) == 1 and "p3.csv" not in batches[0]  # the others went in one batch

    again = drain_bounded(settings, s3aws)
    assert again.code == ExitCode.OK, again.err
    assert (settings.raw_dir / "p3.csv").read_bytes() == objects[moved_key]
    assert bucket_keys(s3aws) == set()


# -- a halt after deletes says what had changed -------------------------------------------------


def test_a_denied_get_after_deletes_says_what_had_changed(tmp_path: Path, s3mem: S3Client) -> None:
    """Three objects already in processed/ are deleted (no GET needed); then S3 denies the first
    GET, which stops the run as a permission problem. Its message must not leave the
    impression that nothing changed."""
    processed = {f"{PREFIX}a{i}.csv": os.urandom(200 + i) for i in range(3)}
    downloads = {f"{PREFIX}b{i}.csv": os.urandom(200 + i) for i in range(4)}
    put_objects(s3mem, {**processed, **downloads})
    settings = drain_settings(tmp_path, workers=1)
    for key, data in processed.items():
        place_copy(settings.processed_dir / key[len(PREFIX) :], data)
    inject(
        s3mem,
        lambda operation, call: (
            error_response(403, "AccessDenied", "Access Denied")
            if operation == "GetObject"
            else None
        ),
    )

    run = drain_bounded(settings, s3mem)

    assert run.code == ExitCode.USAGE, run.err
    error = run.result.info.error or ""
    assert "S3 denied GetObject" in error
    assert (
        "before the run stopped, 3 object(s) had been deleted from S3, each recorded in the "
        "audit log" in error
    )
    assert bucket_keys(s3mem) == set(downloads)
    assert sorted(line["key"] for line in audit_lines(settings) if line["deleted"]) == sorted(
        processed
    )
    assert "had been deleted" in run.summary


# -- recovery: a 412 is `changed`, never deleted ------------------------------------------------


def _in_flight(settings: DrainSettings, record: ObjectRecord) -> None:
    """The ledger as a run killed with this object's delete in flight leaves it."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with Ledger.open(settings.state_dir, settings.local_base_path) as ledger:
        ledger.begin_run("20260101T000000Z", BUCKET, PREFIX)
        path = str(settings.raw_dir / record.key[len(PREFIX) :])
        row = NewDelivery(record, path, None, f"md5:{record.etag}", "md5", "downloaded")
        ledger.deliver(staged=[], adopted=[row], sending=[], adopted_sending=True)


@pytest.mark.parametrize("versioned", [False, True])
def test_recovery_reports_a_412_as_changed_never_deleted(
    tmp_path: Path, s3mem: S3Client, versioned: bool
) -> None:
    """Killed with the delete of `a.csv` in flight; since then the producer uploaded a new
    version. S3 answers the recovery's HEAD If-Match with 412: the recorded object is
    `changed` (in a versioned bucket: its version is still there), never reported deleted."""
    key = f"{PREFIX}a.csv"
    if versioned:
        s3mem.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    old = s3mem.put_object(Bucket=BUCKET, Key=key, Body=b"old")
    new = b"the new upload"
    put_objects(s3mem, {key: new})
    settings = drain_settings(tmp_path)
    listed = datetime(2026, 1, 1, tzinfo=UTC)
    version = old.get("VersionId") if versioned else None
    _in_flight(settings, ObjectRecord(key, 3, md5(b"old"), listed, version_id=version))

    run = drain_bounded(settings, s3mem)

    recovered = [line for line in audit_lines(settings) if line["etag"] == md5(b"old")]
    assert len(recovered) == 1, recovered
    assert recovered[0]["status"] == "changed" and recovered[0]["deleted"] is False
    # In a versioned bucket S3 can say the version was not deleted; without versions it cannot
    # say whether the delete or the upload came first, and the line says so.
    wanted = "stays in the bucket's history" if versioned else "S3 cannot tell"
    assert wanted in recovered[0]["detail"], recovered[0]["detail"]
    # The new version itself drained as usual (the recovered `changed` counts as an object
    # left in S3 for the exit code: 1, as for any object changed during a run).
    assert run.code == ExitCode.PARTIAL, run.err
    assert (settings.raw_dir / "a.csv").read_bytes() == new
    assert bucket_keys(s3mem) == set()
    if versioned:
        kept = s3mem.list_object_versions(Bucket=BUCKET).get("Versions", [])
        assert any(v["VersionId"] == version for v in kept), "the recorded version is kept"


# -- an ingested multipart object, fetched in ranges, verified by its CRC32 ---------------------


class SlowWrites(LocalFS):
    """Each chunk takes a few ms to land, so a large object is still streaming when the
    fetcher looks for idle connections to split it across."""

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        time.sleep(0.01)
        super().pwrite(fd, data, offset)


class DamagedOnce:
    """A response body with one byte flipped in its first chunk."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self._first = True

    def read(self, amount: int) -> bytes:
        data = bytes(self._body.read(amount))
        if self._first and data:
            self._first = False
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    def close(self) -> None:
        self._body.close()


def _damage_first_range(client: S3Client) -> list[str]:
    damaged: list[str] = []

    def handler(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("ContentRange") and not damaged:
            damaged.append(str(parsed["ContentRange"]))
            parsed["Body"] = DamagedOnce(parsed["Body"])

    hook: Callable[..., None] = handler
    client.meta.events.register("after-call.s3.GetObject", hook)
    return damaged


@pytest.mark.parametrize("damage", [False, True])
def test_an_ingested_multipart_object_fetched_in_ranges_is_verified_by_its_crc32(
    tmp_path: Path, s3mem: S3Client, damage: bool
) -> None:
    data = os.urandom(11 * MiB + 123)
    source = tmp_path / "in"
    source.mkdir()
    (source / "big.csv").write_bytes(data)
    put = ingest(settings_for([source]), s3mem)
    assert put.result.exit_code == ExitCode.OK, put.err
    (uploaded,) = put.result.outcomes
    assert uploaded.parts == 3 and uploaded.key is not None
    head = s3mem.head_object(Bucket=BUCKET, Key=uploaded.key, ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"') and head["ChecksumType"] == "FULL_OBJECT"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    ranges: list[str] = []

    def spy(operation: str, call: Call) -> None:
        if operation == "GetObject" and header(call, "Range"):
            ranges.append(header(call, "Range"))

    inject(s3mem, spy)
    damaged = _damage_first_range(s3mem) if damage else []
    prefix = uploaded.key.rsplit("/", 1)[0] + "/"
    settings = drain_settings(
        tmp_path / "etl", prefix=prefix, multipart_threshold=2 * MiB, part_size=MiB
    )

    run = drain_bounded(settings, s3mem, SlowWrites(), FixedStreams(4))

    assert ranges, "the object was never split into ranged GETs"
    if damage:
        # The combined CRC32 of the ranges does not match S3's: the object is not kept, not
        # deleted, and the next run fetches it again.
        assert damaged, "no ranged answer was damaged"
        assert run.code == ExitCode.PARTIAL, run.err
        (failed,) = audit_lines(settings)
        assert failed["status"] == "failed" and failed["deleted"] is False
        assert f"does not match S3's crc32:{crc}" in failed["detail"]
        assert local_tree(settings.raw_dir) == {}
        assert bucket_keys(s3mem) == {uploaded.key}
        run = drain_bounded(settings, s3mem, SlowWrites(), FixedStreams(4))
    assert run.code == ExitCode.OK, run.err
    line = audit_lines(settings)[-1]
    assert line["verified"] == "crc32" and line["checksums"] == f"crc32:{crc}"
    assert line["deleted"] is True
    assert (settings.raw_dir / "big.csv").read_bytes() == data
    assert bucket_keys(s3mem) == set()
