"""The drain pipeline end to end in one process (moto's mock_aws): what lands on disk, what is
left in S3, what the audit log says, and the exit code, for the happy path and the failure paths.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import threading
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from s3drain.drain.delete_requests import fits_xml
from s3drain.drain.fanout import FixedStreams
from s3drain.drain.slots import GetSlots
from s3drain.errors import ExitCode
from s3drain.local.audit import AuditLog
from s3drain.local.fs import LocalFS
from s3drain.local.legacy import XATTR_ETAG
from s3drain.local.lock import run_lock
from s3drain.records import FileId
from s3drain.s3.client import S3Client
from tests.support import moto_aws_like
from tests.support.drainkit import (
    BUCKET,
    PREFIX,
    Answer,
    Call,
    audit_lines,
    bucket_keys,
    drain,
    drain_settings,
    error_response,
    header,
    inject,
    is_probe,
    ledger_rows,
    local_tree,
    md5,
    mock_aws,
    new_client,
    ok_response,
    place_copy,
    put_objects,
    unaudited_keys,
)

MiB = 1024 * 1024


@pytest.fixture
def s3mem() -> Iterator[S3Client]:
    """moto as it is: If-Match on DeleteObject honoured, the per-key ETag of DeleteObjects not,
    so s3drain's probe picks one DeleteObject + If-Match per object."""
    with mock_aws():
        yield new_client()


@pytest.fixture
def s3aws() -> Iterator[S3Client]:
    """moto made to honour the per-key ETag of DeleteObjects, as AWS documents: s3drain's
    probe picks batched deletes (etag-batch)."""
    with mock_aws(), moto_aws_like.patched():
        yield new_client()


def test_drains_more_than_one_page_of_nested_keys(tmp_path: Path, s3aws: S3Client) -> None:
    objects = {
        f"{PREFIX}day{i % 7}/part-{i:05d}.csv": f"row {i}\n".encode() * (i % 5 + 1)
        for i in range(1234)
    }
    put_objects(s3aws, objects)
    put_objects(s3aws, {"exports/2023/other.csv": b"not under the prefix"})
    settings = drain_settings(tmp_path, delete_flush_seconds=600)

    run = drain(settings, s3aws)

    assert run.code == ExitCode.OK, run.err
    assert run.count("downloaded") == 1234
    assert bucket_keys(s3aws) == {"exports/2023/other.csv"}
    tree = local_tree(settings.raw_dir)
    assert tree == {key[len(PREFIX) :]: body for key, body in objects.items()}
    lines = audit_lines(settings)
    assert len(lines) == 1234
    assert all(line["deleted"] and line["status"] == "downloaded" for line in lines)
    assert {line["key"] for line in lines} == set(objects)
    assert all(line["verified"] == "crc32" for line in lines)  # botocore uploads carry one
    requests = run.result.info.requests
    assert requests["ListObjectsV2"] == 2
    assert requests["GetObject"] == 1234
    # one full batch of 1000 (sent as four requests of 250 side by side), then the rest (234,
    # one request) when the run ends (the timer is out of reach); and the probe's two (with an
    # ETag, then without, since moto answers NoSuchKey to the first)
    assert requests["DeleteObjects"] == 4 + 1 + 2
    assert "downloaded" in run.summary and "result: ok" in run.summary


def test_each_object_is_checked_by_the_checksum_s3_has_for_it(
    tmp_path: Path, s3mem: S3Client
) -> None:
    """S3's own full-object checksum when the object has one (botocore validates it on the
    stream); otherwise the MD5 of a single-part ETag; a multipart ETag leaves only the size."""
    put_objects(s3mem, {f"{PREFIX}with-crc.csv": b"checksummed at upload"})
    plain = cast(
        S3Client,
        botocore.session.get_session().create_client(
            "s3",
            region_name="us-east-1",
            aws_access_key_id="k",
            aws_secret_access_key="s",
            config=Config(request_checksum_calculation="when_required"),  # uploads without CRC32
        ),
    )
    plain.put_object(Bucket=BUCKET, Key=f"{PREFIX}plain.csv", Body=b"no checksum stored")
    upload = plain.create_multipart_upload(Bucket=BUCKET, Key=f"{PREFIX}multi.bin")
    part = plain.upload_part(
        Bucket=BUCKET,
        Key=f"{PREFIX}multi.bin",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"m" * 1000,
    )
    plain.complete_multipart_upload(
        Bucket=BUCKET,
        Key=f"{PREFIX}multi.bin",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    settings = drain_settings(tmp_path)

    run = drain(settings, s3mem)

    assert run.code == ExitCode.OK
    verified = {line["key"][len(PREFIX) :]: line["verified"] for line in audit_lines(settings)}
    assert verified["with-crc.csv"] == "crc32"
    assert verified["plain.csv"] == "md5"
    assert (
        verified["multi.bin"]
        == "size (multipart ETag without a full-object checksum: only the size was verified)"
    )


def test_prefix_without_slash_keeps_the_distinguishing_part(
    tmp_path: Path, s3mem: S3Client
) -> None:
    put_objects(s3mem, {"exports/2024/a.csv": b"a", "exports/2024-old/a.csv": b"old"})
    settings = drain_settings(tmp_path, prefix="exports/2024")

    run = drain(settings, s3mem)

    assert run.code == ExitCode.OK
    assert local_tree(settings.raw_dir) == {"2024/a.csv": b"a", "2024-old/a.csv": b"old"}


def test_processed_and_present_are_deleted_without_download(
    tmp_path: Path, s3mem: S3Client
) -> None:
    put_objects(
        s3mem,
        {f"{PREFIX}done.csv": b"12345", f"{PREFIX}half.csv": b"abc", f"{PREFIX}new.csv": b"n"},
    )
    settings = drain_settings(tmp_path)
    (settings.processed_dir).mkdir(parents=True)
    place_copy(settings.processed_dir / "done.csv", b"12345")
    settings.raw_dir.mkdir(parents=True)
    place_copy(settings.raw_dir / "half.csv", b"abc")

    run = drain(settings, s3mem)

    assert run.code == ExitCode.OK
    assert (run.count("processed"), run.count("present"), run.count("downloaded")) == (1, 1, 1)
    assert run.result.info.requests["GetObject"] == 1  # only new.csv was fetched
    assert bucket_keys(s3mem) == set()
    assert not (settings.raw_dir / "done.csv").exists()
    by_key = {line["key"]: line for line in audit_lines(settings)}
    assert by_key[f"{PREFIX}done.csv"]["local_path"] == str(settings.processed_dir / "done.csv")
    assert by_key[f"{PREFIX}half.csv"]["status"] == "present"


def test_conflict_leaves_object_and_local_file_alone(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"from s3", f"{PREFIX}b.csv": b"fine"})
    settings = drain_settings(tmp_path)
    settings.raw_dir.mkdir(parents=True)
    (settings.raw_dir / "a.csv").write_bytes(b"a local edit of another size")

    run = drain(settings, s3mem)

    assert run.code == ExitCode.PARTIAL
    assert run.count("conflict") == 1
    assert bucket_keys(s3mem) == {f"{PREFIX}a.csv"}
    assert (settings.raw_dir / "a.csv").read_bytes() == b"a local edit of another size"
    assert "conflict: exports/2024/a.csv" in run.err
    assert "1 object left in S3" in run.summary


def test_checksum_mode_catches_same_size_different_bytes(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"AAAA", f"{PREFIX}p.csv": b"PPPP"})
    settings = drain_settings(tmp_path, match="checksum")
    settings.raw_dir.mkdir(parents=True)
    (settings.raw_dir / "a.csv").write_bytes(b"BBBB")  # same size, other bytes
    settings.processed_dir.mkdir(parents=True)
    (settings.processed_dir / "p.csv").write_bytes(b"QQQQ")

    run = drain(settings, s3mem)

    assert run.count("conflict") == 1  # a.csv: size matches, MD5 does not
    assert run.count("downloaded") == 1  # p.csv: the processed copy is not this object
    assert bucket_keys(s3mem) == {f"{PREFIX}a.csv"}
    assert (settings.raw_dir / "p.csv").read_bytes() == b"PPPP"


def test_size_match_is_overruled_by_recorded_etag(tmp_path: Path, s3mem: S3Client) -> None:
    """A file s3drain downloaded earlier vouches only for the version it downloaded."""
    put_objects(s3mem, {f"{PREFIX}a.csv": b"new!"})
    settings = drain_settings(tmp_path)
    settings.raw_dir.mkdir(parents=True)
    old = settings.raw_dir / "a.csv"
    old.write_bytes(b"old!")
    try:
        os.setxattr(old, XATTR_ETAG, md5(b"old!").encode())
    except OSError:
        pytest.skip("no user xattrs on this file system")

    run = drain(settings, s3mem)

    assert run.count("conflict") == 1
    assert bucket_keys(s3mem) == {f"{PREFIX}a.csv"}


HOSTILE = {
    f"{PREFIX}../escape": b"1",
    f"{PREFIX}a/../../b": b"2",
    f"{PREFIX}/abs": b"3",
    f"{PREFIX}a//b": b"4",
    f"{PREFIX}tab\there": b"5",
    f"{PREFIX}{'x' * 300}": b"6",
    f"{PREFIX}.s3drain-0123.part": b"7",
    f"{PREFIX}marker-with-bytes/": b"8",
}


def test_hostile_keys_are_refused_and_the_rest_drains(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {**HOSTILE, f"{PREFIX}ok.csv": b"ok", f"{PREFIX}folder/": b""})
    settings = drain_settings(tmp_path)

    run = drain(settings, s3mem)

    assert run.code == ExitCode.PARTIAL
    assert run.count("refused") == len(HOSTILE)
    assert run.count("skipped") == 1  # the zero-byte folder marker
    assert bucket_keys(s3mem) == set(HOSTILE) | {f"{PREFIX}folder/"}
    assert local_tree(settings.raw_dir) == {"ok.csv": b"ok"}
    outside = {p.name for p in tmp_path.iterdir()}
    assert outside == {"raw", "processed", ".s3drain"}
    refused = [line for line in audit_lines(settings) if line["status"] == "refused"]
    assert all(line["detail"] and not line["deleted"] for line in refused)


def test_file_beside_folder_of_same_name(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a": b"file a", f"{PREFIX}a/b": b"file a/b"})
    settings = drain_settings(tmp_path, workers=1)

    run = drain(settings, s3mem)

    assert run.code == ExitCode.PARTIAL
    assert run.count("downloaded") == 1 and run.count("refused") == 1
    assert len(bucket_keys(s3mem)) == 1
    kept = next(iter(bucket_keys(s3mem)))
    placed = local_tree(settings.raw_dir)
    assert kept[len(PREFIX) :] not in placed and len(placed) == 1


def test_large_object_split_across_streams_is_byte_exact(tmp_path: Path, s3mem: S3Client) -> None:
    """Against moto itself: a large object split into streams (a fixed four here; the run's
    own choice is tested in test_fanout.py) arrives byte-exact and proven by S3's CRC32."""
    body = os.urandom(24 * MiB + 12345)
    put_objects(s3mem, {f"{PREFIX}big.bin": body, f"{PREFIX}small.bin": b"s"})
    settings = drain_settings(tmp_path, multipart_threshold=2 * MiB, part_size=MiB)
    seen: list[tuple[str, str]] = []

    def spy(operation: str, request: Call) -> None:
        if operation == "GetObject":
            seen.append((header(request, "Range"), header(request, "If-Match")))

    inject(s3mem, spy)
    run = drain(settings, s3mem, streams=FixedStreams(4))

    assert run.code == ExitCode.OK, run.err
    assert (settings.raw_dir / "big.bin").read_bytes() == body
    assert all(if_match for _, if_match in seen)
    big = next(line for line in audit_lines(settings) if line["key"].endswith("big.bin"))
    assert big["verified"] == "crc32" and big["deleted"]
    assert (
        big["checksums"]
        == f"crc32:{base64.b64encode(zlib.crc32(body).to_bytes(4, 'big')).decode()}"
    )


def test_slots_are_reserved_atomically() -> None:
    slots = GetSlots(4)
    with slots.held(3) as first, slots.held(3) as second, slots.held(3) as third:
        assert (first, second, third) == (3, 1, 1)  # never more than the limit, bar one each
        assert slots.idle() == 0 and not slots.take_idle()
    with slots.held(1):
        assert slots.idle() == 3 and slots.take_idle() and slots.idle() == 2
        slots.give_back(1)
    assert slots.idle() == 4


def test_busy_workers_fetch_large_objects_in_one_get_each(tmp_path: Path, s3mem: S3Client) -> None:
    """12 large objects and 4 workers: parallelism comes from the objects; no object is split
    while the other workers are streaming, whatever the fan-out would like."""
    objects = {f"{PREFIX}{i:02d}.bin": os.urandom(3 * MiB) for i in range(12)}
    put_objects(s3mem, objects)
    settings = drain_settings(tmp_path, workers=4, multipart_threshold=2 * MiB, part_size=MiB)
    gets = {"ranged": 0, "whole": 0}

    def count(operation: str, call: Call) -> None:
        if operation == "GetObject":
            gets["ranged" if header(call, "Range") else "whole"] += 1

    inject(s3mem, count)
    run = drain(settings, s3mem)

    assert run.code == ExitCode.OK
    assert local_tree(settings.raw_dir) == {k[len(PREFIX) :]: v for k, v in objects.items()}
    assert gets["whole"] == 12  # every object starts with one whole GET
    assert gets["ranged"] <= 4  # and few, if any, were split at the tail


def test_a_failed_get_discards_the_temp_file_and_keeps_the_object(
    tmp_path: Path, s3mem: S3Client
) -> None:
    body = os.urandom(3 * MiB)
    put_objects(s3mem, {f"{PREFIX}big.bin": body})
    settings = drain_settings(tmp_path, multipart_threshold=2 * MiB, part_size=MiB)
    inject(
        s3mem,
        lambda operation, request: (
            error_response(500, "InternalError") if operation == "GetObject" else None
        ),
    )
    run = drain(settings, s3mem)

    assert run.count("failed") == 1
    assert bucket_keys(s3mem) == {f"{PREFIX}big.bin"}
    assert local_tree(settings.raw_dir) == {}  # no temp file, no partial file


def test_overwritten_between_list_and_get_stays(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"v1"})
    settings = drain_settings(tmp_path)
    done = threading.Event()

    def overwrite_before_get(operation: str, request: Call) -> None:
        if operation == "GetObject" and not done.is_set():
            done.set()
            put_objects(s3mem, {f"{PREFIX}a.csv": b"version two"})

    inject(s3mem, overwrite_before_get)
    run = drain(settings, s3mem)

    assert run.code == ExitCode.PARTIAL and run.count("changed") == 1
    assert s3mem.get_object(Bucket=BUCKET, Key=f"{PREFIX}a.csv")["Body"].read() == b"version two"
    assert local_tree(settings.raw_dir) == {}


def test_overwritten_between_download_and_delete_single_mode(
    tmp_path: Path, s3mem: S3Client
) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"v1", f"{PREFIX}b.csv": b"b"})
    settings = drain_settings(tmp_path, delete_mode="single")

    def overwrite_before_delete(operation: str, request: Call) -> None:
        if operation == "DeleteObject" and request.url.endswith("/a.csv"):
            put_objects(s3mem, {f"{PREFIX}a.csv": b"v2 is longer"})

    inject(s3mem, overwrite_before_delete)
    run = drain(settings, s3mem)

    assert run.code == ExitCode.PARTIAL
    assert run.count("changed") == 1 and run.count("downloaded") == 1
    assert s3mem.get_object(Bucket=BUCKET, Key=f"{PREFIX}a.csv")["Body"].read() == b"v2 is longer"
    assert (settings.raw_dir / "a.csv").read_bytes() == b"v1"
    line = next(entry for entry in audit_lines(settings) if entry["key"].endswith("a.csv"))
    assert line["status"] == "changed" and not line["deleted"]
    # The next run must not take the old local copy for the new object.
    rerun = drain(settings, s3mem)
    assert rerun.count("conflict") == 1
    assert bucket_keys(s3mem) == {f"{PREFIX}a.csv"}


def test_batch_delete_names_each_object_by_etag(tmp_path: Path, s3aws: S3Client) -> None:
    objects = {f"{PREFIX}{i}.csv": f"body {i}".encode() for i in range(30)}
    put_objects(s3aws, objects)
    settings = drain_settings(tmp_path)
    sent: list[dict[str, Any]] = []
    s3aws.meta.events.register(
        "before-call.s3.DeleteObjects", lambda params, **_: sent.append(params)
    )

    run = drain(settings, s3aws)

    assert run.code == ExitCode.OK
    identifiers = [ident for params in sent for ident in _delete_body(params)]
    identifiers = [i for i in identifiers if ".s3drain-probe-" not in i["Key"]]
    assert {i["Key"]: i["ETag"] for i in identifiers} == {
        k: f'"{md5(v)}"' for k, v in objects.items()
    }


def _delete_body(params: dict[str, Any]) -> list[dict[str, str]]:
    body = params["body"]
    root = ET.fromstring(body if isinstance(body, bytes) else body.encode())
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    return [
        {
            "Key": obj.findtext("s3:Key", namespaces=ns) or "",
            "ETag": obj.findtext("s3:ETag", namespaces=ns) or "",
        }
        for obj in root.findall("s3:Object", ns)
    ]


def test_deletes_flush_on_the_timer_while_downloads_go_on(tmp_path: Path, s3aws: S3Client) -> None:
    put_objects(s3aws, {f"{PREFIX}{i:02d}.csv": b"x" for i in range(40)})
    settings = drain_settings(tmp_path, workers=2, delete_flush_seconds=0.1)
    order: list[str] = []

    def slow_gets(operation: str, call: Call) -> None:
        order.append(operation)
        if operation == "GetObject":
            time.sleep(0.02)

    inject(s3aws, slow_gets)
    run = drain(settings, s3aws)

    assert run.code == ExitCode.OK
    first_delete = order.index("DeleteObjects")
    assert "GetObject" in order[first_delete:]  # a batch went out before the downloads ended
    assert 2 <= order.count("DeleteObjects") < 40


def test_delete_batches_are_on_their_way_side_by_side(tmp_path: Path, s3aws: S3Client) -> None:
    """A server works through one request's keys in turn; the run's last batch must not queue
    behind the one before it."""
    put_objects(s3aws, {f"{PREFIX}{i:02d}.csv": b"x" for i in range(40)})
    settings = drain_settings(tmp_path, workers=4, delete_batch_size=5, delete_flush_seconds=60)
    lock = threading.Lock()
    in_flight = most = 0

    def slow_deletes(operation: str, call: Call) -> None:
        nonlocal in_flight, most
        if operation != "DeleteObjects" or is_probe(call):
            return
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.2)
        with lock:
            in_flight -= 1

    inject(s3aws, slow_deletes)
    run = drain(settings, s3aws)

    assert run.code == ExitCode.OK
    assert most >= 2
    assert bucket_keys(s3aws) == set()
    lines = audit_lines(settings)
    assert len(lines) == 40 and all(line["deleted"] for line in lines)


def test_per_key_delete_errors_are_reported_not_deleted(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a", f"{PREFIX}b.csv": b"b", f"{PREFIX}c.csv": b"c"})
    settings = drain_settings(tmp_path)
    result = {
        "Deleted": [{"Key": f"{PREFIX}c.csv"}],
        "Errors": [
            {"Key": f"{PREFIX}a.csv", "Code": "PreconditionFailed", "Message": "m"},
            {"Key": f"{PREFIX}b.csv", "Code": "AccessDenied", "Message": "m"},
        ],
    }

    def answer(operation: str, call: Call) -> Any:
        return ok_response(result) if operation == "DeleteObjects" else None

    inject(s3mem, answer)
    run = drain(replace(settings, delete_flush_seconds=5.0), s3mem)

    by_key = {line["key"]: line for line in audit_lines(settings)}
    assert by_key[f"{PREFIX}c.csv"]["deleted"] is True
    assert (
        by_key[f"{PREFIX}a.csv"]["status"] == "changed" and not by_key[f"{PREFIX}a.csv"]["deleted"]
    )
    assert (
        by_key[f"{PREFIX}b.csv"]["status"] == "failed"
        and "AccessDenied" in by_key[f"{PREFIX}b.csv"]["detail"]
    )
    assert run.code == ExitCode.PARTIAL
    assert run.result.totals.deleted == 1


@pytest.mark.parametrize(
    "fault",
    [
        lambda: error_response(503, "SlowDown"),
        lambda: error_response(500, "InternalError"),
        lambda: error_response(502, "BadGateway"),
        lambda: error_response(504, "GatewayTimeout"),
        lambda: ConnectionClosedError(endpoint_url="http://x"),
        lambda: ReadTimeoutError(endpoint_url="http://x"),
    ],
)
def test_transient_errors_are_retried_until_success(
    tmp_path: Path, s3mem: S3Client, fault: Any
) -> None:
    put_objects(s3mem, {f"{PREFIX}{i}.csv": b"x" * i for i in range(1, 6)})
    settings = drain_settings(tmp_path)
    failures = {"ListObjectsV2": 1, "GetObject": 3, "DeleteObjects": 1}

    def flaky(operation: str, request: Call) -> Any:
        if failures.get(operation, 0) > 0:
            failures[operation] -= 1
            return fault()
        return None

    inject(s3mem, flaky)
    run = drain(settings, s3mem)

    assert run.code == ExitCode.OK, run.err
    assert bucket_keys(s3mem) == set()
    assert run.result.totals.retries == 5
    assert len(local_tree(settings.raw_dir)) == 5


def test_permanent_get_error_leaves_that_object(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a", f"{PREFIX}secret.csv": b"s"})
    settings = drain_settings(tmp_path, workers=1)
    injector = inject(
        s3mem,
        lambda op, req: (
            error_response(403, "AccessDenied")
            if op == "GetObject" and req.url.endswith("secret.csv")
            else None
        ),
    )

    run = drain(settings, s3mem)

    assert run.code == ExitCode.PARTIAL
    assert bucket_keys(s3mem) == {f"{PREFIX}secret.csv"}
    assert injector.seen["GetObject"] == 2  # 403 is final: not retried
    failed = next(line for line in audit_lines(settings) if line["status"] == "failed")
    assert "403 AccessDenied" in failed["detail"]


def test_access_denied_on_every_get_stops_the_run(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}{i}.csv": b"x" for i in range(50)})
    settings = drain_settings(tmp_path, workers=2)
    injector = inject(
        s3mem, lambda op, req: error_response(403, "AccessDenied") if op == "GetObject" else None
    )

    run = drain(settings, s3mem)

    assert run.code == ExitCode.USAGE
    assert "s3:GetObject" in (run.result.info.error or "")
    assert len(bucket_keys(s3mem)) == 50
    assert injector.seen["GetObject"] < 50  # it stopped instead of trying them all


def test_delete_denied_stops_the_run_and_keeps_objects(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}{i}.csv": b"x" for i in range(5)})
    settings = drain_settings(tmp_path)
    inject(
        s3mem,
        lambda op, req: error_response(403, "AccessDenied") if op == "DeleteObjects" else None,
    )

    run = drain(settings, s3mem)

    # The probe finds the denial before anything is downloaded or deleted.
    assert run.code == ExitCode.USAGE and not run.result.started
    assert "--no-delete" in (run.result.info.error or "")
    assert len(bucket_keys(s3mem)) == 5
    assert run.result.info.requests.get("GetObject", 0) == 0
    assert local_tree(settings.raw_dir) == {}
    assert audit_lines(settings) == []


def test_server_without_conditional_delete_names_the_option(
    tmp_path: Path, s3mem: S3Client
) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a"})
    settings = drain_settings(tmp_path, delete_mode="single")
    inject(
        s3mem,
        lambda op, req: (
            error_response(501, "NotImplemented")
            if op == "DeleteObject" and header(req, "If-Match")
            else None
        ),
    )

    run = drain(settings, s3mem)
    assert run.code == ExitCode.USAGE and not run.result.started
    assert "--delete-mode single" in (run.result.info.error or "")
    assert "--no-conditional-delete" in (run.result.hint or "")
    assert bucket_keys(s3mem) == {f"{PREFIX}a.csv"}
    assert run.result.info.requests.get("GetObject", 0) == 0

    run = drain(replace(settings, conditional_delete=False), s3mem)
    assert run.code == ExitCode.OK
    assert "warning: --no-conditional-delete" in run.err
    assert bucket_keys(s3mem) == set()


class FullDisk(LocalFS):
    """A disk that fills up after `room` bytes have been written."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room
        self.lock = threading.Lock()

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        with self.lock:
            if len(data) > self.room:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.room -= len(data)
        super().pwrite(fd, data, offset)


def test_full_disk_stops_the_run_and_removes_temp_files(tmp_path: Path, s3mem: S3Client) -> None:
    objects = {f"{PREFIX}{i:03d}.csv": os.urandom(1000) for i in range(40)}
    put_objects(s3mem, objects)
    settings = drain_settings(tmp_path, workers=2)

    run = drain(settings, s3mem, fs=FullDisk(room=10_500))

    assert run.code == ExitCode.ABORTED
    assert "disk is full" in (run.result.info.error or "")
    placed = local_tree(settings.raw_dir)
    assert not [name for name in placed if ".s3drain-" in name]
    assert all(placed[name] == objects[PREFIX + name] for name in placed)
    assert bucket_keys(s3mem) == {key for key in objects if key[len(PREFIX) :] not in placed}
    assert 1 <= len(placed) <= 10


class BrokenLink(LocalFS):
    def link_into_place(self, temp: str, target: str) -> None:
        raise OSError(errno.EIO, "Input/output error", target)


def test_failing_link_leaves_object_and_no_temp(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a"})
    settings = drain_settings(tmp_path)

    run = drain(settings, s3mem, fs=BrokenLink())

    assert run.count("failed") == 1 and run.code == ExitCode.PARTIAL
    assert bucket_keys(s3mem) == {f"{PREFIX}a.csv"}
    assert local_tree(settings.raw_dir) == {}


def test_stale_temp_files_are_swept(tmp_path: Path, s3mem: S3Client) -> None:
    settings = drain_settings(tmp_path)
    stale = settings.raw_dir / "deep" / ".s3drain-deadbeefdeadbeefdead.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    keep = settings.raw_dir / "deep" / "real.csv"
    keep.write_bytes(b"real")

    run = drain(settings, s3mem)

    assert run.code == ExitCode.OK
    assert not stale.exists() and keep.exists()
    assert "removed 1 temporary file" in run.err


def test_journal_of_a_killed_run_is_reconciled(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}still-here.csv": b"x"})
    settings = drain_settings(tmp_path, no_delete=True)
    settings.state_dir.mkdir(parents=True)
    entries = [
        {
            "key": f"{PREFIX}gone.csv",
            "size": 3,
            "etag": md5(b"abc"),
            "version_id": None,
            "last_modified": "2026-01-01T00:00:00+00:00",
            "status": "downloaded",
            "local_path": str(settings.raw_dir / "gone.csv"),
            "verified": "md5",
            "bytes": 3,
        },
        {
            "key": f"{PREFIX}still-here.csv",
            "size": 1,
            "etag": md5(b"x"),
            "version_id": None,
            "last_modified": "2026-01-01T00:00:00+00:00",
            "status": "downloaded",
            "local_path": str(settings.raw_dir / "still-here.csv"),
            "verified": "md5",
            "bytes": 1,
        },
    ]
    journal = settings.state_dir / "deletes-in-flight.jsonl"
    journal.write_text("".join(json.dumps(e) + "\n" for e in entries))

    run = drain(settings, s3mem)

    lines = audit_lines(settings)
    recovered = [
        line for line in lines if line["detail"] == "delete confirmed after an interrupted run"
    ]
    assert [line["key"] for line in recovered] == [f"{PREFIX}gone.csv"]
    assert recovered[0]["deleted"] is True
    assert not journal.exists()  # an older s3drain's journal: taken over into the ledger
    assert run.code == ExitCode.OK


def test_a_delete_done_but_answered_with_errors_is_confirmed_by_the_run_itself(
    tmp_path: Path, s3mem: S3Client
) -> None:
    """S3 carries the delete out, its answer is lost, and every retry fails (seen in the fault
    suite: a dropped response, then injected 5xx). The run asks S3 (HEAD If-Match) before it
    reports the object: gone, so deleted, with the line that says so. First the row said "not
    deleted" with no line at all; then the ledger kept the delete in flight and only the next
    run wrote the line, so a run that had ended still left an object gone without its line
    (the fault suite's unaudited-delete). `tests/test_delete_unanswered.py` has the rest."""
    key = f"{PREFIX}a.csv"
    put_objects(s3mem, {key: b"abc", f"{PREFIX}b.csv": b"b"})
    settings = drain_settings(tmp_path)
    carried_out = threading.Event()
    inside = threading.local()  # this rule's own delete goes through to moto

    def done_then_errors(operation: str, call: Call) -> Answer | None:
        if getattr(inside, "active", False) or is_probe(call):
            return None
        body = call.params.get("body", b"")
        named = key in unquote(call.url) or (isinstance(body, bytes) and key.encode() in body)
        if operation not in ("DeleteObject", "DeleteObjects") or not named:
            return None
        if not carried_out.is_set():
            carried_out.set()
            inside.active = True
            try:
                s3mem.delete_object(Bucket=BUCKET, Key=key)
            finally:
                inside.active = False
        return error_response(500, "InternalError")

    injector = inject(s3mem, done_then_errors)
    first = drain(settings, s3mem)

    assert carried_out.is_set()
    assert first.code == ExitCode.OK, first.err
    assert bucket_keys(s3mem) == set()  # b.csv deleted as usual, a.csv by the "lost" attempt
    assert [row["delete_state"] for row in ledger_rows(settings, "key LIKE '%a.csv'")] == [
        "deleted"
    ]
    claimed = [line for line in audit_lines(settings) if line["key"] == key]
    assert len(claimed) == 1 and claimed[0]["deleted"] is True, claimed
    assert "S3 no longer holds it" in claimed[0]["detail"]
    assert local_tree(settings.raw_dir)["a.csv"] == b"abc"
    assert unaudited_keys(settings) == set()
    s3mem.meta.events.unregister("before-call.s3", cast(Any, injector))

    second = drain(settings, s3mem)

    assert second.code == ExitCode.OK
    assert "interrupted run" not in second.err
    assert len(audit_lines(settings)) == 2


def test_versioned_bucket_leaves_a_delete_marker_and_the_history(
    tmp_path: Path, s3mem: S3Client
) -> None:
    s3mem.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put_objects(s3mem, {f"{PREFIX}a.csv": b"old version"})
    put_objects(s3mem, {f"{PREFIX}a.csv": b"current", f"{PREFIX}b.csv": b"b"})
    settings = drain_settings(tmp_path)

    run = drain(settings, s3mem)

    assert run.code == ExitCode.OK
    assert local_tree(settings.raw_dir) == {"a.csv": b"current", "b.csv": b"b"}
    assert bucket_keys(s3mem) == set()  # the keys left the prefix...
    versions = s3mem.list_object_versions(Bucket=BUCKET)
    kept = sorted((v["Key"], v["Size"]) for v in versions.get("Versions", []))
    assert kept == [(f"{PREFIX}a.csv", 7), (f"{PREFIX}a.csv", 11), (f"{PREFIX}b.csv", 1)]
    assert len(versions.get("DeleteMarkers", [])) == 2  # ...and nothing was destroyed
    current = {v["VersionId"] for v in versions["Versions"] if v["Size"] in (7, 1)}
    assert {line["version_id"] for line in audit_lines(settings)} == current
    # A second run finds nothing: older versions do not come back into the prefix.
    assert drain(settings, s3mem).result.totals.listed == 0


def test_versioned_bucket_without_conditions_deletes_the_downloaded_version(
    tmp_path: Path, s3mem: S3Client
) -> None:
    s3mem.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put_objects(s3mem, {f"{PREFIX}a.csv": b"v1"})
    settings = drain_settings(tmp_path, conditional_delete=False, delete_mode="single")

    def overwrite_before_delete(operation: str, call: Call) -> None:
        if operation in ("DeleteObject", "DeleteObjects"):
            put_objects(s3mem, {f"{PREFIX}a.csv": b"v2, uploaded mid-run"})

    inject(s3mem, overwrite_before_delete)
    run = drain(settings, s3mem)

    assert run.code == ExitCode.OK
    assert "warning: --no-conditional-delete" in run.err
    assert (settings.raw_dir / "a.csv").read_bytes() == b"v1"
    body = s3mem.get_object(Bucket=BUCKET, Key=f"{PREFIX}a.csv")["Body"].read()
    assert body == b"v2, uploaded mid-run"  # the new upload is still the current object


def test_dry_run_changes_nothing(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a", f"{PREFIX}../x": b"x"})
    base = tmp_path / "never-created"
    settings = drain_settings(base, dry_run=True)

    run = drain(settings, s3mem)

    assert not base.exists()
    assert len(bucket_keys(s3mem)) == 2
    assert "would download" in run.out and "exports/2024/a.csv" in run.out
    assert "would refuse" in run.out
    assert run.result.info.requests.get("GetObject", 0) == 0
    assert "DeleteObjects" not in run.result.info.requests  # not even the probe's
    assert "DeleteObject" not in run.result.info.requests


def test_no_delete_copies_and_verifies_only(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a"})
    settings = drain_settings(tmp_path, no_delete=True)

    run = drain(settings, s3mem)

    assert run.code == ExitCode.OK
    assert bucket_keys(s3mem) == {f"{PREFIX}a.csv"}
    assert local_tree(settings.raw_dir) == {"a.csv": b"a"}
    assert audit_lines(settings)[0]["deleted"] is False
    assert "kept in S3 (--no-delete)" in run.summary


def test_missing_bucket_is_a_config_error_and_leaves_no_trace(
    tmp_path: Path, s3mem: S3Client
) -> None:
    settings = replace(drain_settings(tmp_path / "base"), bucket="no-such-bucket")
    run = drain(settings, s3mem)
    assert run.code == ExitCode.USAGE and not run.result.started
    assert "does not exist" in (run.result.info.error or "")
    assert run.result.info.requests == {"GetBucketVersioning": 1}
    assert list(tmp_path.iterdir()) == []  # no folders, no lock, no audit log


def test_second_run_on_same_base_is_refused(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a"})
    settings = drain_settings(tmp_path)
    settings.state_dir.mkdir(parents=True)
    with run_lock(settings.state_dir, tmp_path):
        run = drain(settings, s3mem)
    assert run.code == ExitCode.LOCKED and not run.result.started
    assert "changed nothing" in (run.result.info.error or "")
    assert bucket_keys(s3mem) == {f"{PREFIX}a.csv"}
    assert not settings.audit_log.exists()


def test_max_delete_guard_deletes_nothing(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}{i}.csv": b"x" for i in range(12)})
    settings = drain_settings(tmp_path, max_delete=10)

    run = drain(settings, s3mem)

    assert run.code == ExitCode.DELETE_GUARD and not run.result.started
    assert "would delete 12 objects" in (run.result.info.error or "")
    assert run.result.totals.listed == 12
    assert len(bucket_keys(s3mem)) == 12
    assert local_tree(settings.raw_dir) == {}
    assert drain(replace(settings, max_delete=12), s3mem).code == ExitCode.OK


def test_stop_event_ends_the_run_cleanly(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}{i:04d}.csv": b"x" * 100 for i in range(400)})
    settings = drain_settings(tmp_path, workers=2)
    stop = threading.Event()
    seen = {"n": 0}

    def stop_after_some(operation: str, request: Call) -> None:
        if operation == "GetObject":
            seen["n"] += 1
            if seen["n"] == 20:
                stop.set()

    inject(s3mem, stop_after_some)
    run = drain(settings, s3mem, stop=stop)

    assert run.code == ExitCode.INTERRUPTED
    placed = local_tree(settings.raw_dir)
    remaining = bucket_keys(s3mem)
    assert 20 <= len(placed) < 400
    assert not [name for name in placed if ".s3drain-" in name]
    # every object is in exactly one place, and what was deleted is recorded
    assert {PREFIX + name for name in placed} | remaining >= {
        f"{PREFIX}{i:04d}.csv" for i in range(400)
    }
    deleted = {line["key"] for line in audit_lines(settings) if line["deleted"]}
    assert deleted == {f"{PREFIX}{i:04d}.csv" for i in range(400)} - remaining


class RecordingFS(LocalFS):
    """Notes when folders are fsynced, so a test can line that up with the deletes."""

    def __init__(self, events: list[str], fail_sync: bool = False) -> None:
        super().__init__()
        self.events = events
        self.fail_sync = fail_sync

    def fsync_dir(self, path: str) -> None:
        if self.fail_sync:
            raise OSError(errno.EIO, "Input/output error")
        self.events.append(f"sync-folder {path}")
        super().fsync_dir(path)

    def fsync_file(self, path: str, expect: FileId) -> None:
        self.events.append(f"sync-file {path}")
        super().fsync_file(path, expect)


def test_folders_are_fsynced_before_their_deletes(tmp_path: Path, s3aws: S3Client) -> None:
    put_objects(
        s3aws,
        {
            f"{PREFIX}a/1.csv": b"1",
            f"{PREFIX}a/2.csv": b"2",
            f"{PREFIX}b/3.csv": b"3",
            f"{PREFIX}c/old.csv": b"old",
        },
    )
    settings = drain_settings(tmp_path, delete_flush_seconds=60)
    (settings.raw_dir / "c").mkdir(parents=True)
    place_copy(settings.raw_dir / "c" / "old.csv", b"old")  # present: written by someone else
    events: list[str] = []
    inject(
        s3aws,
        lambda op, call: (
            events.append("delete") if op == "DeleteObjects" and not is_probe(call) else None
        ),
    )

    run = drain(settings, s3aws, fs=RecordingFS(events))

    assert run.code == ExitCode.OK
    first_delete = events.index("delete")
    synced = set(events[:first_delete])
    raw = settings.raw_dir
    assert {f"sync-folder {raw / d}" for d in "abc"} <= synced
    assert f"sync-file {raw / 'c' / 'old.csv'}" in synced  # a file this run did not write
    assert f"sync-file {raw / 'a' / '1.csv'}" not in synced  # fsynced when it was written
    assert events.count("sync-folder " + str(raw / "a")) == 1  # once per batch, not per file


def test_failed_fsync_means_no_delete(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a"})
    settings = drain_settings(tmp_path)

    run = drain(settings, s3mem, fs=RecordingFS([], fail_sync=True))

    assert run.code == ExitCode.PARTIAL
    assert bucket_keys(s3mem) == {f"{PREFIX}a.csv"}
    assert "could not be fsynced" in audit_lines(settings)[0]["detail"]


def test_a_key_xml_cannot_carry_is_deleted_on_its_own(tmp_path: Path, s3aws: S3Client) -> None:
    odd = f"{PREFIX}nonchar-\ufffe.bin"
    put_objects(s3aws, {odd: b"odd", f"{PREFIX}a.csv": b"a", f"{PREFIX}b.csv": b"b"})
    settings = drain_settings(tmp_path, delete_flush_seconds=60)
    singles: list[str] = []

    batches: list[str] = []

    def note(operation: str, call: Call) -> None:
        if operation == "DeleteObject" and not is_probe(call):
            singles.append(call.params["url_path"])
        if operation == "DeleteObjects" and not is_probe(call):
            batches.append(operation)

    inject(s3aws, note)
    run = drain(settings, s3aws)

    assert run.code == ExitCode.OK, run.err
    assert bucket_keys(s3aws) == set()
    assert len(singles) == 1 and "nonchar" in singles[0]
    assert len(batches) == 1


def test_fits_xml() -> None:
    assert fits_xml("exports/été/☃/𝄞.csv")
    assert not fits_xml("a\ufffeb") and not fits_xml("a\uffffb") and not fits_xml("a\x01b")


def test_fits_xml_is_the_char_production_of_xml_1_0() -> None:
    production = [(0x9, 0x9), (0xA, 0xA), (0xD, 0xD), (0x20, 0xD7FF), (0xE000, 0xFFFD)]
    production.append((0x10000, 0x10FFFF))
    edges = {edge + step for low, high in production for edge in (low, high) for step in (-1, 0, 1)}
    for code in sorted((edges | set(range(0x100))) & set(range(0x110000))):
        expected = any(low <= code <= high for low, high in production)
        assert fits_xml(f"key{chr(code)}.csv") is expected, hex(code)


def test_audit_log_failure_stops_deletes_and_the_next_run_catches_up(
    tmp_path: Path, s3mem: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = {f"{PREFIX}{i:02d}.csv": f"{i}".encode() for i in range(30)}
    put_objects(s3mem, objects)
    settings = drain_settings(tmp_path, workers=2, delete_flush_seconds=0.05)
    real_append = AuditLog._append
    written = {"n": 0}

    def fill_up(self: AuditLog, data: bytes) -> None:
        written["n"] += 1
        if written["n"] > 5:
            if written["n"] == 6:  # the disk fills mid-line, as a crash would leave it
                os.write(self._fd or 0, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_append(self, data)

    monkeypatch.setattr(AuditLog, "_append", fill_up)
    first = drain(settings, s3mem)
    monkeypatch.setattr(AuditLog, "_append", real_append)

    assert first.code == ExitCode.ABORTED
    assert "audit log" in (first.result.info.error or "")
    deleted = set(objects) - bucket_keys(s3mem)
    lines = settings.audit_log.read_text().splitlines()
    recorded = {json.loads(line)["key"] for line in lines[:5]}
    owed = deleted - recorded
    assert unaudited_keys(settings) >= owed  # the ledger says whose lines are owed

    second = drain(settings, s3mem)

    assert second.code == ExitCode.OK, second.err
    audit = audit_lines(settings)  # every line parses: the torn one was ended, not glued on
    assert {line["key"] for line in audit if line["deleted"]} == set(objects)
    assert local_tree(settings.raw_dir) == {k[len(PREFIX) :]: v for k, v in objects.items()}


def test_journal_recovery_sees_through_a_new_upload(tmp_path: Path, s3mem: S3Client) -> None:
    """Killed with the delete in flight; since then the producer uploaded a new version at the
    same key. Whether the old one was deleted or overwritten cannot be told: it is `changed`,
    never reported deleted (the key still holds an object)."""
    put_objects(s3mem, {f"{PREFIX}a.csv": b"the new upload"})
    settings = drain_settings(tmp_path, no_delete=True)
    settings.state_dir.mkdir(parents=True)
    entry = {
        "key": f"{PREFIX}a.csv",
        "size": 3,
        "etag": md5(b"old"),
        "version_id": None,
        "last_modified": "2026-01-01T00:00:00+00:00",
        "status": "downloaded",
        "local_path": str(settings.raw_dir / "a.csv"),
        "verified": "md5",
        "bytes": 3,
    }
    (settings.state_dir / "deletes-in-flight.jsonl").write_text(json.dumps(entry) + "\n")

    drain(settings, s3mem)

    recovered = [line for line in audit_lines(settings) if line["etag"] == md5(b"old")]
    assert len(recovered) == 1
    assert recovered[0]["deleted"] is False and recovered[0]["status"] == "changed"
    assert "left S3 while its delete was in flight" in recovered[0]["detail"]


def test_keys_are_printed_with_control_characters_escaped(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}esc\x1b[2J\rfake.csv": b"x"})
    run = drain(drain_settings(tmp_path), s3mem)
    assert run.count("refused") == 1
    assert "\x1b" not in run.err and "\r" not in run.err
    assert "esc\\x1b[2J\\rfake.csv" in run.err


def test_timeouts_are_s3_failures_not_local_errors(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a"})
    inject(
        s3mem,
        lambda op, call: ReadTimeoutError(endpoint_url="http://x") if op == "GetObject" else None,
    )
    run = drain(drain_settings(tmp_path), s3mem)
    detail = audit_lines(drain_settings(tmp_path))[0]["detail"]
    assert run.code == ExitCode.PARTIAL
    assert "ReadTimeoutError" in detail and "local error" not in detail


def test_access_denied_on_listing_is_a_config_error(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a"})
    injector = inject(
        s3mem,
        lambda op, call: error_response(403, "AccessDenied") if op == "ListObjectsV2" else None,
    )
    run = drain(drain_settings(tmp_path), s3mem)
    injector.rule = lambda op, call: None  # let the check below list the bucket
    assert run.code == ExitCode.USAGE
    assert "s3:ListBucket" in (run.result.info.error or "")
    assert bucket_keys(s3mem) == {f"{PREFIX}a.csv"}


def test_no_permission_to_read_versioning_only_warns(tmp_path: Path, s3mem: S3Client) -> None:
    put_objects(s3mem, {f"{PREFIX}a.csv": b"a"})
    inject(
        s3mem,
        lambda op, call: (
            error_response(403, "AccessDenied") if op == "GetBucketVersioning" else None
        ),
    )
    run = drain(drain_settings(tmp_path), s3mem)
    assert run.code == ExitCode.OK
    assert "cannot read the bucket's versioning" in run.err
    assert bucket_keys(s3mem) == set()


def test_audit_log_room_check(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", "run", "bucket")
    assert log.has_room(1024)
    assert not log.has_room(10**18)  # more than any disk here
