"""Direct GETs (s3/direct.py, s3/direct_target.py) against moto's HTTP server: what botocore
resolves is reproduced exactly, keys of every shape reach the right object, S3's errors and a
broken link come back as the failures the retry policy knows, and a kept connection the server
closed is noticed before it is used."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore import UNSIGNED

from s3drain.config.s3 import S3Settings
from s3drain.s3.client import RequestCounter, make_client
from s3drain.s3.direct import Answer, Connection, Endpoint, HttpFailure, LinkFailure
from s3drain.s3.direct_target import DirectTarget, direct_target
from s3drain.s3.sigv4 import Credentials
from tests.support.proxy import FaultProxy
from tests.support.server import S3Client, free_port, s3_client

BUCKET = "direct"
HOSTILE_KEYS = [
    "plain.csv",
    "with space/and+plus.csv",
    "percent%2B and %25.csv",
    "ünïcödé/日本語/файл.bin",
    "a//b",
    "../up/one",
    "./dot",
    "~tilde/!*'()[]$,;:@&=.csv",
    "q?mark#hash",
]


def _settings(url: str, **changes: object) -> S3Settings:
    values: dict[str, object] = {
        "endpoint_url": url,
        "region": "us-east-1",
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "addressing_style": "path",
    }
    values.update(changes)
    return S3Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def target(s3_url: str, s3: S3Client) -> DirectTarget:
    s3.create_bucket(Bucket=BUCKET)
    learned = direct_target(make_client(_settings(s3_url)), BUCKET, _settings(s3_url))
    assert learned is not None
    return learned


def test_the_target_is_botocores_endpoint_and_unsent_requests_are_not_counted(
    s3_url: str, s3: S3Client
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    counter = RequestCounter()
    client = make_client(_settings(s3_url), counter)
    learned = direct_target(client, BUCKET, _settings(s3_url))
    assert learned is not None
    e = learned.endpoint
    port = int(s3_url.rsplit(":", 1)[1])
    assert (e.scheme, e.host, e.port, e.host_header, e.base_path, e.region) == (
        "http",
        "127.0.0.1",
        port,
        f"127.0.0.1:{port}",
        f"/{BUCKET}",
        "us-east-1",
    )
    assert learned.credentials() == Credentials("testing", "testing", None)
    assert counter.total() == 0  # the probe request was built and signed, never sent


def test_virtual_hosted_addressing_puts_the_bucket_in_the_host() -> None:
    settings = S3Settings(
        region="eu-west-1", access_key_id="AK", secret_access_key="SK", addressing_style="virtual"
    )
    learned = direct_target(make_client(settings), "my-bucket", settings)
    assert learned is not None
    e = learned.endpoint
    assert (e.scheme, e.host, e.port, e.base_path, e.region) == (
        "https",
        "my-bucket.s3.eu-west-1.amazonaws.com",
        443,
        "",
        "eu-west-1",
    )
    assert e.verify and e.ca_file


def test_no_direct_gets_where_botocore_would_send_differently(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(s3_url)
    assert direct_target(s3_client(s3_url, signature_version=UNSIGNED), BUCKET, settings) is None
    assert direct_target(s3_client(s3_url, signature_version="s3"), BUCKET, settings) is None
    with monkeypatch.context() as env:
        env.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        env.setenv("NO_PROXY", "")
        assert direct_target(make_client(settings), BUCKET, settings) is None
    # The same plain client, for contrast, does get direct GETs.
    assert direct_target(s3_client(s3_url), BUCKET, settings) is not None


def _credentials() -> Credentials:
    return Credentials("testing", "testing")


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_every_key_reaches_its_own_object(target: DirectTarget, s3: S3Client, key: str) -> None:
    body = key.encode() * 7
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    s3.put_object(Bucket=BUCKET, Key=key + "-decoy", Body=b"not this one")
    conn = Connection(target.endpoint)
    etag = hashlib.md5(body).hexdigest()
    answer = conn.get(_credentials(), key, headers={"if-match": f'"{etag}"'})
    assert answer.fields["ETag"].strip('"') == etag
    assert _body(answer) == body
    assert answer.finished
    answer.close()


def test_checksums_and_versions_come_back_as_botocore_names_them(
    target: DirectTarget, s3: S3Client
) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put = s3.put_object(Bucket=BUCKET, Key="v.csv", Body=b"one", ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=BUCKET, Key="v.csv", Body=b"two")
    conn = Connection(target.endpoint)
    answer = conn.get(
        _credentials(),
        "v.csv",
        version_id=put["VersionId"],
        headers={"x-amz-checksum-mode": "ENABLED"},
    )
    assert _body(answer) == b"one"
    answer.close()
    assert answer.fields["VersionId"] == put["VersionId"]
    assert answer.fields["ChecksumSHA256"] == put["ChecksumSHA256"]


def test_s3_errors_are_http_failures_with_s3s_code(target: DirectTarget, s3: S3Client) -> None:
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"data")
    conn = Connection(target.endpoint)
    with pytest.raises(HttpFailure) as changed:
        conn.get(_credentials(), "k", headers={"if-match": '"0123456789abcdef0123456789abcdef"'})
    assert (changed.value.status, changed.value.code) == (412, "PreconditionFailed")
    with pytest.raises(HttpFailure) as missing:
        conn.get(_credentials(), "no/such/key")
    assert (missing.value.status, missing.value.code) == (404, "NoSuchKey")
    # The connection is still good after both (their bodies were read to the end).
    assert _body(conn.get(_credentials(), "k")) == b"data"


def test_faults_on_the_way_are_link_failures_or_5xx(s3_url: str, s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"x" * 100_000)
    with FaultProxy(s3_url) as proxy:
        endpoint = Endpoint(
            "http", "127.0.0.1", _port(proxy.url), _netloc(proxy.url), f"/{BUCKET}", "us-east-1"
        )
        conn = Connection(endpoint)
        for kind, expected in (
            ("503", HttpFailure),
            ("reset_before", LinkFailure),
            ("drop_response", LinkFailure),
        ):
            proxy.configure(fault_rate=1.0, fault_kinds=(kind,), max_faults=1)
            with pytest.raises(expected):
                conn.get(_credentials(), "k")
        proxy.configure(fault_rate=1.0, fault_kinds=("truncate",), max_faults=1)
        answer = conn.get(_credentials(), "k")
        received = 0
        while chunk := answer.read(65536):
            received += len(chunk)
        assert received == 50_000  # the body ends early: the caller's length check fails it
        answer.close()
        proxy.configure(fault_rate=0.0)
        assert _body(conn.get(_credentials(), "k")) == b"x" * 100_000


def test_nothing_listening_and_no_answer_are_told_apart(tmp_path: Path) -> None:
    port = free_port()
    refused = Connection(
        Endpoint("http", "127.0.0.1", port, f"127.0.0.1:{port}", "/b", "us-east-1")
    )
    with pytest.raises(LinkFailure) as nobody:
        refused.get(_credentials(), "k")
    assert nobody.value.kind == "connect"

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    sport = silent.getsockname()[1]
    mute = Connection(
        Endpoint(
            "http", "127.0.0.1", sport, f"127.0.0.1:{sport}", "/b", "us-east-1", read_timeout=0.3
        )
    )
    with pytest.raises(LinkFailure) as waited:
        mute.get(_credentials(), "k")
    assert waited.value.kind == "read-timeout"
    silent.close()


def test_a_kept_connection_the_server_closed_is_replaced_before_sending(
    target: DirectTarget, s3: S3Client
) -> None:
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"data")
    conn = Connection(target.endpoint)
    assert _body(conn.get(_credentials(), "k")) == b"data"
    # moto's server closes after every answer: each further GET must notice and reconnect.
    for _ in range(5):
        assert _body(conn.get(_credentials(), "k")) == b"data"


@pytest.fixture
def many_connections(target: DirectTarget) -> Iterator[list[Connection]]:
    conns = [Connection(target.endpoint) for _ in range(8)]
    yield conns
    for conn in conns:
        conn.close()


def test_connections_in_parallel_each_get_their_own_bytes(
    many_connections: list[Connection], s3: S3Client
) -> None:
    bodies = {f"p/{i}": hashlib.sha256(str(i).encode()).digest() * 50 for i in range(40)}
    for key, body in bodies.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    got: dict[str, bytes] = {}

    def work(conn: Connection, keys: list[str]) -> None:
        for key in keys:
            answer = conn.get(_credentials(), key)
            got[key] = _body(answer)
            answer.close()

    keys = sorted(bodies)
    threads = [
        threading.Thread(target=work, args=(conn, keys[n :: len(many_connections)]))
        for n, conn in enumerate(many_connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == bodies


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


def _netloc(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


def test_tls_and_timeouts_are_the_clients_own(s3_url: str) -> None:
    settings = _settings(s3_url, ca_bundle="/etc/ssl/certs/ca-certificates.crt")
    learned = direct_target(make_client(settings), BUCKET, settings)
    assert learned is not None
    assert learned.endpoint.ca_file == "/etc/ssl/certs/ca-certificates.crt"
    assert learned.endpoint.connect_timeout == settings.connect_timeout
    assert learned.endpoint.read_timeout == settings.read_timeout


def _body(answer: Answer) -> bytes:
    """The whole body: a read returns what one receive brought, up to the size asked for."""
    data = b""
    while chunk := answer.read(1 << 20):
        data += chunk
    answer.close()
    return data
