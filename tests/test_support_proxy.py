"""Tests of the test infrastructure: the moto server process and the fault proxy."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from tests.support.proxy import FaultProxy, LogEntry, RequestInfo, s3_operation, split_target
from tests.support.server import MotoServer, S3Client, ServerStartError, s3_client

BUCKET = "drain-src"
REPO_ROOT = Path(__file__).resolve().parent.parent
# moto treats unsigned requests as anonymous and refuses them; it does not check signatures.
AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


@pytest.fixture
def client(fault_proxy: FaultProxy) -> Iterator[S3Client]:
    """A client through the proxy that does not retry, so every fault reaches the test."""
    c = s3_client(fault_proxy.url, retries={"total_max_attempts": 1}, read_timeout=5)
    yield c
    c.close()


@pytest.fixture
def bucket(s3: S3Client) -> str:
    s3.create_bucket(Bucket=BUCKET)
    return BUCKET


def exists(s3: S3Client, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "404":
            return False
        raise
    return True


def faults_on(proxy: FaultProxy, kind: str, op: str, **settings: Any) -> None:
    proxy.configure(fault_rate=1.0, fault_kinds=(kind,), fault_ops=frozenset({op}), **settings)


def raw_request(method: str, path: str, body: bytes = b"", *extra_headers: str) -> bytes:
    headers = ["Host: 127.0.0.1", f"Authorization: {AUTH}", *extra_headers]
    if body or method in ("PUT", "POST"):
        headers.append(f"Content-Length: {len(body)}")
    return "\r\n".join([f"{method} {path} HTTP/1.1", *headers, "", ""]).encode() + body


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, return all bytes the proxy sends back before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while data := sock.recv(65536):
            received += data
        return received


# --- classification ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "headers", "op"),
    [
        ("GET", "/", {}, "ListBuckets"),
        ("GET", "/b?list-type=2&prefix=a%2F", {}, "ListObjectsV2"),
        ("GET", "/b?versions&prefix=a", {}, "ListObjectVersions"),
        ("GET", "/b?prefix=a", {}, "ListObjects"),
        ("GET", "/b?versioning", {}, "GetBucketVersioning"),
        ("GET", "/b?cors", {}, "Other"),
        ("HEAD", "/b", {}, "HeadBucket"),
        ("PUT", "/b", {}, "CreateBucket"),
        ("POST", "/b?delete", {}, "DeleteObjects"),
        ("GET", "/b/k", {}, "GetObject"),
        ("GET", "/b/a/k?versionId=3", {}, "GetObject"),
        ("HEAD", "/b/k", {}, "HeadObject"),
        ("PUT", "/b/k", {}, "PutObject"),
        ("PUT", "/b/k", {"x-amz-copy-source": "b/j"}, "CopyObject"),
        ("DELETE", "/b/k?versionId=3", {}, "DeleteObject"),
        ("POST", "/b/k?uploads", {}, "CreateMultipartUpload"),
        ("PUT", "/b/k?partNumber=1&uploadId=u", {}, "UploadPart"),
        ("PUT", "/b/k?partNumber=1&uploadId=u", {"x-amz-copy-source": "b/j"}, "UploadPartCopy"),
        ("POST", "/b/k?uploadId=u", {}, "CompleteMultipartUpload"),
        ("DELETE", "/b/k?uploadId=u", {}, "AbortMultipartUpload"),
        ("GET", "/b/k?uploadId=u", {}, "ListParts"),
        ("GET", "/b/k?acl", {}, "Other"),
        ("PATCH", "/b/k", {}, "Other"),
    ],
)
def test_names_s3_operations(method: str, target: str, headers: dict[str, str], op: str) -> None:
    _, bucket, key, params = split_target(target)
    assert s3_operation(method, bucket, key, params, headers) == op


def test_split_target_unquotes_bucket_and_key() -> None:
    path, bucket, key, params = split_target("/b/a%20b/c?x-id=GetObject")
    assert (path, bucket, key, params) == ("/b/a%20b/c", "b", "a b/c", {"x-id": "GetObject"})


# --- forwarding ----------------------------------------------------------------------------


def test_forwards_and_counts_each_operation(
    fault_proxy: FaultProxy, client: S3Client, s3: S3Client
) -> None:
    client.create_bucket(Bucket=BUCKET)
    client.head_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="dir/a b.txt", Body=b"alpha")
    client.put_object(Bucket=BUCKET, Key="dir/c", Body=b"")
    assert client.get_object(Bucket=BUCKET, Key="dir/a b.txt")["Body"].read() == b"alpha"
    assert client.head_object(Bucket=BUCKET, Key="dir/a b.txt")["ContentLength"] == 5
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/a b.txt", "dir/c"]
    client.list_object_versions(Bucket=BUCKET)
    client.get_bucket_versioning(Bucket=BUCKET)
    deleted = client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "dir/a b.txt"}]})
    assert [d["Key"] for d in deleted["Deleted"]] == ["dir/a b.txt"]
    client.delete_object(Bucket=BUCKET, Key="dir/c")

    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert fault_proxy.counts() == {
        "CreateBucket": 1,
        "HeadBucket": 1,
        "PutObject": 2,
        "GetObject": 1,
        "HeadObject": 1,
        "ListObjectsV2": 1,
        "ListObjectVersions": 1,
        "GetBucketVersioning": 1,
        "DeleteObjects": 1,
        "DeleteObject": 1,
    }
    assert all(entry.status in (200, 204) for entry in fault_proxy.log())
    assert fault_proxy.errors() == []
    fault_proxy.reset_counts()
    assert fault_proxy.counts() == {}
    assert fault_proxy.log() == []


def test_forwards_multipart_upload(fault_proxy: FaultProxy, client: S3Client, bucket: str) -> None:
    upload = client.create_multipart_upload(Bucket=bucket, Key="mp")
    part = client.upload_part(
        Bucket=bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"p1"
    )
    client.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    aborted = client.create_multipart_upload(Bucket=bucket, Key="gone")
    client.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=aborted["UploadId"])

    assert client.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"p1"
    assert fault_proxy.counts() == {
        "CreateMultipartUpload": 2,
        "UploadPart": 1,
        "CompleteMultipartUpload": 1,
        "AbortMultipartUpload": 1,
        "GetObject": 1,
    }


def _random_file(path: Path, size: int) -> str:
    digest = hashlib.md5()
    with path.open("wb") as f:
        for _ in range(size // (1 << 20)):
            block = os.urandom(1 << 20)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def test_streams_a_large_body_both_ways(
    fault_proxy: FaultProxy, client: S3Client, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    size = 50 << 20
    source = tmp_path / "big"
    expected_md5 = _random_file(source, size)

    # The proxy runs in this process, so tracemalloc sees it: a proxy that buffered the body
    # would need 50 MiB at once.
    tracemalloc.start()
    try:
        with source.open("rb") as f:
            client.put_object(Bucket=bucket, Key="big", Body=f)
        body = client.get_object(Bucket=bucket, Key="big")["Body"]
        digest = hashlib.md5()
        received = 0
        for piece in body.iter_chunks(1 << 20):
            digest.update(piece)
            received += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert received == size
    assert digest.hexdigest() == expected_md5
    assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == size
    assert peak < 16 << 20, f"peak traced memory {peak >> 20} MiB"


def test_chunked_request_body_and_keep_alive(fault_proxy: FaultProxy, bucket: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fault_proxy.port, timeout=5)
    conn.putrequest("PUT", f"/{bucket}/chunked")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Authorization", AUTH)
    conn.endheaders()
    for piece in (b"abc", b"defgh", b""):
        conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
    assert conn.getresponse().read() == b""
    first_socket = conn.sock

    conn.request("HEAD", f"/{bucket}/chunked", headers={"Authorization": AUTH})
    head = conn.getresponse()
    assert (head.status, head.getheader("Content-Length"), head.read()) == (200, "8", b"")
    conn.request("GET", f"/{bucket}/chunked", headers={"Authorization": AUTH})
    assert conn.getresponse().read() == b"abcdefgh"

    assert conn.sock is first_socket, "the proxy closed a keep-alive connection"
    conn.close()


def test_answers_expect_100_continue(fault_proxy: FaultProxy, bucket: str) -> None:
    with socket.create_connection(("127.0.0.1", fault_proxy.port), timeout=5) as sock:
        request = raw_request("PUT", f"/{bucket}/expect", b"body", "Expect: 100-continue")
        sock.sendall(request.removesuffix(b"body"))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"body")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 ")
    assert fault_proxy.counts() == {"PutObject": 1}


# --- faults --------------------------------------------------------------------------------


ERROR_CODES = {
    "503": "SlowDown",
    "500": "InternalError",
    "502": "BadGateway",
    "504": "GatewayTimeout",
}


@pytest.mark.parametrize("kind", ERROR_CODES)
def test_error_faults_are_answered_without_forwarding(
    fault_proxy: FaultProxy, client: S3Client, s3: S3Client, bucket: str, kind: str
) -> None:
    faults_on(fault_proxy, kind, "PutObject")
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key="k", Body=b"x" * 100_000)
    error = caught.value.response
    assert error["Error"]["Code"] == ERROR_CODES[kind]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == int(kind)
    assert not exists(s3, "k")
    assert fault_proxy.fault_counts() == {kind: 1}
    assert fault_proxy.log() == [LogEntry("PutObject", int(kind), kind)]

    # The body was read, so the kept-alive connection still works.
    client.list_objects_v2(Bucket=bucket)


def test_reset_before_never_reaches_the_server(
    fault_proxy: FaultProxy, client: S3Client, s3: S3Client, bucket: str
) -> None:
    faults_on(fault_proxy, "reset_before", "PutObject")
    with pytest.raises(ConnectionClosedError):
        client.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert not exists(s3, "k")

    faults_on(fault_proxy, "reset_before", "GetObject")
    with pytest.raises(ConnectionResetError):
        raw_exchange(fault_proxy.port, raw_request("GET", f"/{bucket}/k"))


def test_reset_after_delete_hides_that_it_happened(
    fault_proxy: FaultProxy, client: S3Client, s3: S3Client, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    faults_on(fault_proxy, "reset_after", "DeleteObject")
    with pytest.raises(ConnectionClosedError):
        client.delete_object(Bucket=bucket, Key="k")
    assert not exists(s3, "k")
    assert fault_proxy.log() == [LogEntry("DeleteObject", 204, "reset_after")]

    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    with pytest.raises(ConnectionResetError):
        raw_exchange(fault_proxy.port, raw_request("DELETE", f"/{bucket}/k"))
    assert not exists(s3, "k")


def test_drop_response_closes_quietly_after_the_server_acted(
    fault_proxy: FaultProxy, client: S3Client, s3: S3Client, bucket: str
) -> None:
    faults_on(fault_proxy, "drop_response", "DeleteObjects")
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    with pytest.raises(ConnectionClosedError):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
    assert not exists(s3, "k")

    faults_on(fault_proxy, "drop_response", "PutObject")
    # An orderly close: EOF, not a reset, and not one byte of response.
    assert raw_exchange(fault_proxy.port, raw_request("PUT", f"/{bucket}/k2", b"hi")) == b""
    assert exists(s3, "k2")


def test_truncate_cuts_the_body(
    fault_proxy: FaultProxy, client: S3Client, s3: S3Client, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 300_000)
    faults_on(fault_proxy, "truncate", "GetObject")
    body = client.get_object(Bucket=bucket, Key="k")["Body"]
    with pytest.raises(ResponseStreamingError):
        body.read()

    faults_on(fault_proxy, "truncate", "HeadObject")
    with pytest.raises(ConnectionClosedError):
        client.head_object(Bucket=bucket, Key="k")
    assert fault_proxy.fault_counts() == {"truncate": 2}


def test_stall_outlasts_the_read_timeout(
    fault_proxy: FaultProxy, s3: S3Client, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    faults_on(fault_proxy, "stall", "GetObject", stall_seconds=3.0)
    impatient = s3_client(fault_proxy.url, retries={"total_max_attempts": 1}, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        impatient.get_object(Bucket=bucket, Key="k")
    assert time.monotonic() - started < 2.0

    fault_proxy.configure(fault_rate=0.0)
    assert impatient.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    impatient.close()


def test_fault_ops_and_max_faults_pick_which_requests_fail(
    fault_proxy: FaultProxy, client: S3Client, s3: S3Client, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    faults_on(fault_proxy, "503", "DeleteObjects", max_faults=1)
    client.list_objects_v2(Bucket=bucket)
    client.get_object(Bucket=bucket, Key="k")["Body"].read()
    delete = {"Objects": [{"Key": "k"}]}
    with pytest.raises(ClientError):
        client.delete_objects(Bucket=bucket, Delete=delete)
    client.delete_objects(Bucket=bucket, Delete=delete)
    assert [entry.fault for entry in fault_proxy.log()] == [None, None, "503", None]


def _fault_pattern(upstream: str, bucket: str, seed: int) -> list[str | None]:
    with FaultProxy(
        upstream, fault_rate=0.3, fault_kinds=("503", "500"), seed=seed, record_log=True
    ) as proxy:
        c = s3_client(proxy.url, retries={"total_max_attempts": 1})
        for _ in range(60):
            with contextlib.suppress(ClientError):
                c.head_bucket(Bucket=bucket)
        c.close()
        return [entry.fault for entry in proxy.log()]


def test_seeded_fault_rate_is_reproducible(s3_url: str, bucket: str) -> None:
    first = _fault_pattern(s3_url, bucket, seed=7)
    assert 6 <= sum(fault is not None for fault in first) <= 36
    assert _fault_pattern(s3_url, bucket, seed=7) == first
    assert _fault_pattern(s3_url, bucket, seed=8) != first


def test_latency_delays_every_response(
    fault_proxy: FaultProxy, client: S3Client, bucket: str
) -> None:
    fault_proxy.configure(latency=0.1)
    started = time.monotonic()
    client.head_bucket(Bucket=bucket)
    faults_on(fault_proxy, "503", "HeadBucket")
    with pytest.raises(ClientError):
        client.head_bucket(Bucket=bucket)
    assert time.monotonic() - started >= 0.2


# --- hook ----------------------------------------------------------------------------------


def test_before_forward_runs_before_the_request_reaches_the_server(
    fault_proxy: FaultProxy, client: S3Client, s3: S3Client, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v1")
    seen: list[RequestInfo] = []

    def overwrite_on_delete(info: RequestInfo) -> None:
        if info.op == "DeleteObjects" and not seen:
            seen.append(info)
            s3.put_object(Bucket=bucket, Key="late", Body=b"v2")

    fault_proxy.before_forward = overwrite_on_delete
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}, {"Key": "late"}]})

    assert not exists(s3, "k")
    assert not exists(s3, "late"), "the hook ran after the delete was forwarded"
    (info,) = seen
    assert (info.method, info.path, info.bucket, info.key) == ("POST", f"/{bucket}", bucket, "")
    assert "delete" in info.query
    assert info.headers["authorization"].startswith("AWS4-HMAC-SHA256")


def test_a_failing_hook_is_reported_to_the_client(
    fault_proxy: FaultProxy, client: S3Client, bucket: str
) -> None:
    def broken(info: RequestInfo) -> None:
        raise RuntimeError("boom")

    fault_proxy.before_forward = broken
    with pytest.raises(ClientError, match="ProxyHookError"):
        client.list_objects_v2(Bucket=bucket)
    assert fault_proxy.errors() == ["before_forward hook: RuntimeError('boom')"]


# --- as separate processes -----------------------------------------------------------------


def test_proxy_process_prints_url_and_writes_counts_on_sigterm(
    s3_url: str, bucket: str, tmp_path: Path
) -> None:
    counts_file = tmp_path / "counts.json"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.support.proxy", "--upstream", s3_url),
            *("--fault-rate", "1", "--fault-kinds", "503", "--fault-ops", "GetObject"),
            *("--counts-file", str(counts_file)),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        c = s3_client(url, retries={"total_max_attempts": 1})
        c.head_bucket(Bucket=bucket)
        with pytest.raises(ClientError):
            c.get_object(Bucket=bucket, Key="k")
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()
    assert json.loads(counts_file.read_text()) == {
        "counts": {"HeadBucket": 1, "GetObject": 1},
        "faults": {"503": 1},
    }


def test_server_process_serves_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.server"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        c = s3_client(url)
        c.create_bucket(Bucket=BUCKET)
        assert [b["Name"] for b in c.list_buckets()["Buckets"]] == [BUCKET]
        port = int(url.rsplit(":", 1)[1])
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_server_start_failure_reports_the_log() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        server = MotoServer(port=taken.getsockname()[1])
        with pytest.raises(ServerStartError, match="exited with code"):
            server.start()
    assert "Address already in use" in server.log_path.read_text()
    server.close()
    assert not server.log_path.exists()
