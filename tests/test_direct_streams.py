"""Large objects' streams by direct GETs (drain/direct_streams.py) against moto's HTTP server:
a whole GET and ranges answer as botocore's would, S3's errors come back as botocore's
exceptions, and an answer botocore would have handled itself (here a server that redirects
every request) hands this GET and every later one back to botocore, with one warning."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from s3drain.drain.direct_streams import DirectStreams
from s3drain.drain.direct_switch import DirectSwitch
from s3drain.s3.direct import Endpoint
from s3drain.s3.sigv4 import Credentials
from tests.support.server import S3Client, free_port

BUCKET = "streams"


def _streams(url: str, client: S3Client, warnings: list[str], counted: list[int]) -> DirectStreams:
    netloc = url.split("://", 1)[1].rstrip("/")
    port = int(netloc.rsplit(":", 1)[1])
    return DirectStreams(
        Endpoint("http", "127.0.0.1", port, netloc, f"/{BUCKET}", "us-east-1"),
        credentials=lambda: Credentials("testing", "testing"),
        client=client,
        switch=DirectSwitch(warnings.append),
        count=counted.append,
        endpoint_url=url,
    )


def _read(answer: dict[str, Any]) -> bytes:
    body = answer["Body"]
    data = b""
    while chunk := body.read(1 << 20):
        data += chunk
    body.close()
    return data


def test_whole_and_ranged_answers_are_what_botocore_parses(s3_url: str, s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)
    body = bytes(range(256)) * 4096
    s3.put_object(Bucket=BUCKET, Key="big.bin", Body=body)
    etag = f'"{hashlib.md5(body).hexdigest()}"'
    warnings: list[str] = []
    counted: list[int] = []
    streams = _streams(s3_url, s3, warnings, counted)
    whole = streams.get_object(Bucket=BUCKET, Key="big.bin", IfMatch=etag)
    botocore = s3.get_object(Bucket=BUCKET, Key="big.bin", IfMatch=etag, ChecksumMode="ENABLED")
    assert whole["ETag"] == botocore["ETag"]
    assert whole.get("ChecksumCRC32") == botocore.get("ChecksumCRC32")
    assert _read(whole) == body
    part = streams.get_object(Bucket=BUCKET, Key="big.bin", IfMatch=etag, Range="bytes=1000-1999")
    assert part["ContentRange"] == f"bytes 1000-1999/{len(body)}"
    assert _read(part) == body[1000:2000]
    with pytest.raises(ClientError) as changed:
        streams.get_object(Bucket=BUCKET, Key="big.bin", IfMatch='"0"')
    assert changed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert counted == [1, 1, 1] and warnings == []
    streams.close()


def test_nothing_listening_is_botocores_connection_error(s3: S3Client) -> None:
    port = free_port()
    streams = _streams(f"http://127.0.0.1:{port}", s3, [], [])
    with pytest.raises(EndpointConnectionError):
        streams.get_object(Bucket=BUCKET, Key="k", IfMatch='"0"')


class _Redirecting(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (
            b"<?xml version='1.0'?><Error><Code>PermanentRedirect</Code>"
            b"<Message>use the bucket's own endpoint</Message></Error>"
        )
        self.send_response(301)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_answer_botocore_would_handle_hands_the_gets_back_to_botocore(
    redirecting: str, s3: S3Client
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"through botocore")
    etag = f'"{hashlib.md5(b"through botocore").hexdigest()}"'
    warnings: list[str] = []
    streams = _streams(redirecting, s3, warnings, [])
    assert _read(streams.get_object(Bucket=BUCKET, Key="k", IfMatch=etag)) == b"through botocore"
    assert _read(streams.get_object(Bucket=BUCKET, Key="k", IfMatch=etag)) == b"through botocore"
    assert len(warnings) == 1 and "PermanentRedirect" in warnings[0]
