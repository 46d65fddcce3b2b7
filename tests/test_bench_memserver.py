"""The bench's in-memory S3 endpoint (benchmarks/memserver.py) answers as AWS does where the
bench's figures and s3drain's guarantees rely on it: conditional deletes, listings, ranges,
conditional GETs, what a PUT stored. Plain botocore calls against the real server process."""

from __future__ import annotations

import base64
import http.client
import os
import socket
import subprocess
import sys
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.memory import OwnMemory
from benchmarks.memwire import byte_range, dechunk, page
from benchmarks.s3 import S3Client, make_client
from tests.support.endpoints import answer as _answer

BUCKET = "mem"
WRONG_ETAG = '"' + "0" * 32 + '"'
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server() -> Iterator[OwnMemory]:
    backend = OwnMemory(BUCKET).start()
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def client(server: OwnMemory) -> Iterator[S3Client]:
    server.fresh("", restart=True)
    s3 = make_client(server.target)
    try:
        yield s3
    finally:
        s3.close()


def _exists(client: S3Client, key: str) -> bool:
    return _answer(lambda: client.head_object(Bucket=BUCKET, Key=key)) == "ok"


def _put(client: S3Client, key: str, body: bytes = b"payload") -> str:
    etag: str = client.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"]
    return etag


# --- conditional deletes: what s3drain's exact deletes rely on --------------------------------


def test_delete_object_if_match_refuses_another_etag_and_keeps_the_object(
    client: S3Client,
) -> None:
    etag = _put(client, "k")
    call = lambda: client.delete_object(Bucket=BUCKET, Key="k", IfMatch=WRONG_ETAG)  # noqa: E731
    assert _answer(call) == "412 PreconditionFailed"
    assert _exists(client, "k")
    client.delete_object(Bucket=BUCKET, Key="k", IfMatch=etag)
    assert not _exists(client, "k")


def test_delete_object_if_match_on_a_missing_key_is_404_and_plain_delete_is_ok(
    client: S3Client,
) -> None:
    call = lambda: client.delete_object(Bucket=BUCKET, Key="gone", IfMatch=WRONG_ETAG)  # noqa: E731
    assert _answer(call) == "404 NoSuchKey"
    assert _answer(lambda: client.delete_object(Bucket=BUCKET, Key="gone")) == "ok"


@pytest.mark.parametrize("quiet", [False, True])
def test_delete_objects_honours_each_keys_etag(client: S3Client, quiet: bool) -> None:
    right = _put(client, "right")
    _put(client, "wrong")
    answer = client.delete_objects(
        Bucket=BUCKET,
        Delete={
            "Objects": [
                {"Key": "right", "ETag": right},
                {"Key": "wrong", "ETag": WRONG_ETAG},
                {"Key": "missing", "ETag": WRONG_ETAG},
            ],
            "Quiet": quiet,
        },
    )
    errors = {error["Key"]: error["Code"] for error in answer.get("Errors", [])}
    assert errors == {"wrong": "PreconditionFailed", "missing": "NoSuchKey"}
    deleted = [item["Key"] for item in answer.get("Deleted", [])]
    assert deleted == ([] if quiet else ["right"])
    assert not _exists(client, "right")
    assert _exists(client, "wrong")


# --- listings --------------------------------------------------------------------------------

ODD_KEYS = ("a/plus+sign", "a/space here", "a/per%cent", "a/ünï/cödé", "a/amp&lt;", "a/q?x=1")


def test_listings_page_through_every_key_in_order_v1_and_v2(client: S3Client) -> None:
    keys = sorted([f"a/{i:03d}" for i in range(25)] + list(ODD_KEYS) + ["b/outside"])
    for key in keys:
        _put(client, key)
    wanted = [key for key in keys if key.startswith("a/")]
    for method in ("list_objects_v2", "list_objects"):
        seen: list[str] = []
        for answer in client.get_paginator(method).paginate(
            Bucket=BUCKET, Prefix="a/", PaginationConfig={"PageSize": 7}
        ):
            assert len(answer.get("Contents", [])) <= 7
            seen += [item["Key"] for item in answer.get("Contents", [])]
        assert seen == wanted, method


def test_a_delimiter_rolls_keys_up_and_pages_past_a_common_prefix(client: S3Client) -> None:
    for key in ("p/a/1", "p/a/2", "p/a/3", "p/b/1", "p/c", "p/d/1"):
        _put(client, key)
    for method in ("list_objects_v2", "list_objects"):
        prefixes: list[str] = []
        keys: list[str] = []
        for answer in client.get_paginator(method).paginate(
            Bucket=BUCKET, Prefix="p/", Delimiter="/", PaginationConfig={"PageSize": 1}
        ):
            prefixes += [item["Prefix"] for item in answer.get("CommonPrefixes", [])]
            keys += [item["Key"] for item in answer.get("Contents", [])]
        assert prefixes == ["p/a/", "p/b/", "p/d/"], method
        assert keys == ["p/c"], method


def test_a_listing_gives_size_etag_and_date(client: S3Client) -> None:
    etag = _put(client, "x/one", b"12345")
    (item,) = client.list_objects_v2(Bucket=BUCKET, Prefix="x/")["Contents"]
    assert (item["Key"], item["Size"], item["ETag"]) == ("x/one", 5, etag)
    assert item["LastModified"].year >= 2026


# --- GETs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "expected"),
    [("bytes=0-0", b"0"), ("bytes=2-4", b"234"), ("bytes=7-", b"789"), ("bytes=-2", b"89")],
)
def test_ranged_gets(client: S3Client, span: str, expected: bytes) -> None:
    _put(client, "r", b"0123456789")
    answer = client.get_object(Bucket=BUCKET, Key="r", Range=span)
    assert answer["Body"].read() == expected
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert answer["ContentRange"].endswith("/10")


def test_a_range_past_the_end_is_416(client: S3Client) -> None:
    _put(client, "r", b"0123456789")
    call = lambda: client.get_object(Bucket=BUCKET, Key="r", Range="bytes=10-20")  # noqa: E731
    assert _answer(call) == "416 InvalidRange"


def test_conditional_gets(client: S3Client) -> None:
    etag = _put(client, "c", b"body")
    assert client.get_object(Bucket=BUCKET, Key="c", IfMatch=etag)["Body"].read() == b"body"
    call = lambda: client.get_object(Bucket=BUCKET, Key="c", IfMatch=WRONG_ETAG)  # noqa: E731
    assert _answer(call) == "412 PreconditionFailed"
    call = lambda: client.get_object(Bucket=BUCKET, Key="c", IfNoneMatch=etag)  # noqa: E731
    assert _answer(call) == "304 304"  # no body, as S3's 304: botocore names it by its status
    assert _answer(lambda: client.get_object(Bucket=BUCKET, Key="none")) == "404 NoSuchKey"


def test_a_put_stores_the_bytes_md5_etag_and_the_checksum_it_was_sent(client: S3Client) -> None:
    body = os.urandom(3 * 1024 * 1024)  # botocore sends this with Expect: 100-continue
    etag = client.put_object(Bucket=BUCKET, Key="big", Body=body, ChecksumAlgorithm="CRC32")["ETag"]
    answer = client.get_object(Bucket=BUCKET, Key="big", ChecksumMode="ENABLED")
    assert answer["Body"].read() == body
    assert etag.strip('"') == __import__("hashlib").md5(body).hexdigest()
    expected = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert answer["ChecksumCRC32"] == expected


def test_a_multipart_upload_gets_the_multipart_etag(client: S3Client) -> None:
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
    first, second = b"a" * (5 * 1024 * 1024), b"tail"
    parts = [
        {"PartNumber": n, "ETag": client.upload_part(**{"Body": body}, **_part(upload, n))["ETag"]}
        for n, body in ((1, first), (2, second))
    ]
    etag = client.complete_multipart_upload(
        Bucket=BUCKET, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )["ETag"]
    md5 = __import__("hashlib").md5
    assert etag == f'"{md5(md5(first).digest() + md5(second).digest()).hexdigest()}-2"'
    assert client.get_object(Bucket=BUCKET, Key="mp")["Body"].read() == first + second


def _part(upload: str, number: int) -> dict[str, Any]:
    return {"Bucket": BUCKET, "Key": "mp", "UploadId": upload, "PartNumber": number}


def test_a_presigned_get_and_unknown_operations(client: S3Client, server: OwnMemory) -> None:
    _put(client, "p", b"signed")
    url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "p"})
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback http
        assert answer.read() == b"signed"
    call = lambda: client.get_object_tagging(Bucket=BUCKET, Key="p")  # noqa: E731
    assert _answer(call) == "501 NotImplemented"
    call = lambda: client.list_objects_v2(Bucket="no-such-bucket")  # noqa: E731
    assert _answer(call) == "404 NoSuchBucket"


def test_requests_on_one_connection_are_answered_in_order(
    client: S3Client, server: OwnMemory
) -> None:
    _put(client, "one", b"1")
    _put(client, "two", b"22")
    host, port = server.target.endpoint_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for key, body in (("one", b"1"), ("two", b"22"), ("one", b"1")):
            connection.request("GET", f"/{BUCKET}/{key}")
            answer = connection.getresponse()
            assert (answer.status, answer.read()) == (200, body)
    finally:
        connection.close()


def test_a_body_of_unknown_length_is_refused_not_misread(server: OwnMemory) -> None:
    host, port = server.target.endpoint_url.removeprefix("http://").split(":")
    request = (
        f"PUT /{BUCKET}/chunked HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n0\r\n\r\n"
    )
    # The whole request in one write: the server answers and hangs up at once.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 411 ")


def test_requests_are_counted_by_operation(client: S3Client, server: OwnMemory) -> None:
    mark = server.count_mark()
    etag = _put(client, "n")
    client.get_object(Bucket=BUCKET, Key="n")["Body"].read()
    client.list_objects_v2(Bucket=BUCKET)
    client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "n", "ETag": etag}]})
    assert server.counts_since(mark) == {
        "PutObject": 1,
        "GetObject": 1,
        "ListObjectsV2": 1,
        "DeleteObjects": 1,
    }


def test_a_restart_keeps_the_address_and_holds_nothing(client: S3Client, server: OwnMemory) -> None:
    _put(client, "kept?")
    url = server.target.endpoint_url
    server.fresh("", restart=True)
    assert server.target.endpoint_url == url
    assert not _exists(client, "kept?")
    assert (server.cpu_seconds() or 0.0) > 0.0


# --- the wire formats, without a server -------------------------------------------------------


def test_dechunk_signed_and_unsigned_aws_chunked_bodies() -> None:
    signed = b"5;chunk-signature=abc\r\nhello\r\n3;chunk-signature=def\r\n!!!\r\n0;chunk-signature=0\r\n\r\n"
    assert dechunk(signed) == (b"hello!!!", {})
    unsigned = b"4\r\ndata\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    assert dechunk(unsigned) == (b"data", {"x-amz-checksum-crc32": "AAAAAA=="})


def test_byte_ranges() -> None:
    assert byte_range("bytes=0-", 0) is None
    assert byte_range("bytes=-100", 10) == (0, 9)
    assert byte_range("bytes=5-100", 10) == (5, 9)
    assert byte_range("bytes=0-1,3-4", 10) is None
    assert byte_range("bytes=4-3", 10) is None


def test_page_rolls_up_and_stops_at_max_keys() -> None:
    keys = ["a/1", "a/2", "b/x/1", "b/x/2", "b/y", "c"]
    first = page(keys, "", "/", "", 2)
    assert (first.keys, first.prefixes, first.truncated) == ([], ["a/", "b/"], True)
    rest = page(keys, "", "/", first.last, 2)
    assert (rest.keys, rest.prefixes, rest.truncated) == (["c"], [], False)
    assert page(keys, "b/", "", "b/x/1", 10).keys == ["b/x/2", "b/y"]


# --- s3drain against it ------------------------------------------------------------------------


def test_s3drain_drains_it_with_batched_exact_deletes(
    client: S3Client, server: OwnMemory, tmp_path: Path
) -> None:
    bodies = {f"in/{key}": os.urandom(100 + i) for i, key in enumerate(ODD_KEYS)}
    bodies |= {f"in/f{i:02d}": os.urandom(4096) for i in range(30)}
    for key, body in bodies.items():
        _put(client, key, body)
    mark = server.count_mark()
    target = server.target
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3DRAIN_"))},
        **target.credential_env(),
    }
    done = subprocess.run(
        [
            *(sys.executable, "-m", "s3drain", "drain", "--bucket", BUCKET, "--prefix", "in/"),
            *("--local-base-path", str(tmp_path / "out"), "--endpoint-url", target.endpoint_url),
            *("--addressing-style", "path", "--region", target.region, "-q"),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for key, body in bodies.items():
        assert (tmp_path / "out" / "raw" / key.removeprefix("in/")).read_bytes() == body
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="in/").get("KeyCount") == 0
    counts = server.counts_since(mark)
    # The probe found both conditional forms honoured: the objects went in DeleteObjects
    # batches, not one DeleteObject each (the probe's own three requests aside: a DeleteObject
    # with If-Match and a plain one, each of a missing key, and a DeleteObjects of one).
    assert counts["GetObject"] == len(bodies)
    assert counts["DeleteObjects"] <= 3
    assert counts["DeleteObject"] == 2
