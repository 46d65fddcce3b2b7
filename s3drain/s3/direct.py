"""GetObject (and the listing's ListObjectsV2, and DeleteObjects) sent directly: signed here
(`sigv4.py`), over one kept-alive HTTP/1.1 connection per thread (`http1.py`), with S3's
answer read straight off the socket.

botocore spends about 1 ms of CPU on each call (parameter handling, endpoint rules, events,
signing, response parsing); for a 4 KiB object that is most of the work. A drain's GET is always
the same request with a different key, so it is built here from what botocore resolved once
(`direct_target.py`: the URL layout, the signing region, TLS, the credentials).

The answer's headers become the fields botocore would have parsed (`ETag`, `VersionId`,
`ChecksumCRC32`, ...), so the checks that follow are the same for both paths; a listing's
answer is read by `list_xml.py`. Failures are
`HttpFailure` (S3 answered with an error) or `LinkFailure` (no answer); the caller maps them to
botocore's exceptions, and `retry.py` decides as for any request.

Imports only the standard library: it runs in the fetch processes too.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from s3drain.s3.http1 import Http1, LinkFailure, Response
from s3drain.s3.sigv4 import Credentials, Signer, quote_key, quote_query

__all__ = ["Answer", "Connection", "Connections", "Endpoint", "HttpFailure", "LinkFailure"]

# Header -> the name botocore gives the field in a GetObject answer.
_FIELDS = {
    "etag": "ETag",
    "last-modified": "LastModified",
    "x-amz-version-id": "VersionId",
    "content-range": "ContentRange",
    "x-amz-checksum-crc32": "ChecksumCRC32",
    "x-amz-checksum-crc32c": "ChecksumCRC32C",
    "x-amz-checksum-crc64nvme": "ChecksumCRC64NVME",
    "x-amz-checksum-sha1": "ChecksumSHA1",
    "x-amz-checksum-sha256": "ChecksumSHA256",
    "x-amz-checksum-type": "ChecksumType",
    "x-amz-server-side-encryption": "ServerSideEncryption",
    "x-amz-server-side-encryption-customer-algorithm": "SSECustomerAlgorithm",
}
_ERROR_BODY_LIMIT = 64 * 1024
_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")


@dataclass(frozen=True)
class Endpoint:
    """Where and how GETs go: learned from botocore once per run (`direct_target.py`)."""

    scheme: str  # "http" or "https"
    host: str  # what to connect to (and the TLS server name)
    port: int
    host_header: str  # the Host header, as signed
    base_path: str  # "/bucket" for path-style addressing, "" for virtual-hosted
    region: str  # the signing region
    ca_file: str | None = None  # None: the system's default trust store
    verify: bool = True
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


class HttpFailure(Exception):
    """S3 answered with an error status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Answer:
    """A 200/206 answer: its fields, and the body still on the connection."""

    def __init__(self, response: Response) -> None:
        self._response = response
        headers = response.headers
        self.fields = {field: headers[name] for name, field in _FIELDS.items() if name in headers}

    @property
    def finished(self) -> bool:
        """The whole body has been read (the connection can take the next request)."""
        return self._response.finished

    def read(self, size: int) -> bytes:
        """Up to `size` bytes; b"" at the end of the body or where it was cut short."""
        return self._response.read(size)

    def readinto(self, buffer: memoryview) -> int:
        """Up to len(buffer) bytes into it; 0 at the end of the body or where it was cut."""
        return self._response.readinto(buffer)

    def close(self) -> None:
        self._response.close()


class Connection:
    """One kept-alive connection to the endpoint, for one thread at a time."""

    def __init__(self, endpoint: Endpoint, signer: Signer | None = None) -> None:
        self.endpoint = endpoint
        self._signer = signer or Signer(endpoint.region)
        self._http = Http1(
            endpoint.host,
            endpoint.port,
            tls=_tls(endpoint) if endpoint.scheme == "https" else None,
            connect_timeout=endpoint.connect_timeout,
            read_timeout=endpoint.read_timeout,
        )

    def close(self) -> None:
        self._http.close()

    def abort(self) -> None:
        """From another thread: end the exchange in flight now (its read fails at once)."""
        self._http.abort()

    def get(
        self,
        credentials: Credentials,
        key: str,
        *,
        version_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """GetObject; raises HttpFailure or LinkFailure (a kept connection the server closed
        is noticed before sending, as urllib3 does; one closed while the request is on its way
        is a failed attempt, for the retry policy to count and decide)."""
        e = self.endpoint
        path = f"{e.base_path}/{quote_key(key)}"
        query = f"versionId={quote_query(version_id)}" if version_id else ""
        signed = self._signer.sign(
            credentials, "GET", e.host_header, path, query=query, headers=headers
        )
        target = f"{path}?{query}" if query else path
        head = f"GET {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in signed.items())
        response = self._http.request((head + "\r\n").encode("ascii"))
        if response.status in (200, 206):
            return Answer(response)
        body = b""
        with contextlib.suppress(LinkFailure):
            while len(body) < _ERROR_BODY_LIMIT and (chunk := response.read(_ERROR_BODY_LIMIT)):
                body += chunk
        response.close()
        code = _first(_CODE, body) or response.reason.replace(" ", "") or "Error"
        raise HttpFailure(response.status, code, _first(_MESSAGE, body))

    def list_objects_v2(
        self, credentials: Credentials, prefix: str, max_keys: int, token: str | None
    ) -> bytes:
        """ListObjectsV2's whole answer (keys URL-encoded, as botocore asks); raises
        HttpFailure or LinkFailure, as `get` does."""
        e = self.endpoint
        params = {"list-type": "2", "prefix": prefix, "max-keys": str(max_keys)}
        params["encoding-type"] = "url"
        if token is not None:
            params["continuation-token"] = token
        query = "&".join(f"{k}={quote_query(v)}" for k, v in params.items())
        path = e.base_path or "/"
        signed = self._signer.sign(credentials, "GET", e.host_header, path, query=query)
        head = f"GET {path}?{query} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in signed.items()
        )
        return _ok_body(self._http.request((head + "\r\n").encode("ascii")))

    def delete_objects(
        self,
        credentials: Credentials,
        body: bytes,
        *,
        headers: Mapping[str, str],
        payload_hash: str,
        now: float | None = None,
    ) -> bytes:
        """DeleteObjects' whole 200 answer for `body` (`delete_xml.py`), with `headers` (its
        checksum, as botocore sends it) signed along; raises HttpFailure or LinkFailure."""
        signed = self.sign_delete(credentials, headers, payload_hash, now)
        e = self.endpoint
        head = f"POST {e.base_path or '/'}?delete HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in signed.items()
        )
        head += f"content-length: {len(body)}\r\n\r\n"
        return _ok_body(self._http.request(head.encode("ascii") + body))

    def sign_delete(
        self,
        credentials: Credentials,
        headers: Mapping[str, str],
        payload_hash: str,
        now: float | None = None,
    ) -> dict[str, str]:
        e = self.endpoint
        return self._signer.sign(
            credentials,
            "POST",
            e.host_header,
            e.base_path or "/",
            query="delete=",
            headers=headers,
            now=now,
            payload_hash=payload_hash,
        )


class Connections:
    """One kept connection to `endpoint` per thread that asks, all closed (or cut) together."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[Connection] = []

    def mine(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Connection(self._endpoint)
            with self._lock:
                self._conns.append(conn)
        return conn

    def abort(self) -> None:
        """From another thread: every exchange in flight fails now."""
        with self._lock:
            for conn in self._conns:
                conn.abort()

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()


def _ok_body(response: Response) -> bytes:
    """A 200 answer's whole body; any other status raises HttpFailure with S3's code."""
    if response.status == 200:
        return _whole(response, None)
    answer = _whole(response, _ERROR_BODY_LIMIT)
    code = _first(_CODE, answer) or response.reason.replace(" ", "") or "Error"
    raise HttpFailure(response.status, code, _first(_MESSAGE, answer))


def _whole(response: Response, limit: int | None) -> bytes:
    """The body (or its first `limit` bytes: an error's, where only its code matters)."""
    parts: list[bytes] = []
    size = 0
    try:
        while limit is None or size < limit:
            chunk = response.read(1 << 20)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    except LinkFailure:
        if limit is None:
            raise
    if limit is not None:
        response.close()
    elif response.cut_short:
        raise LinkFailure("closed", "the connection broke mid-answer")
    return b"".join(parts)


def _tls(endpoint: Endpoint) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=endpoint.ca_file)
    if not endpoint.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _first(pattern: re.Pattern[bytes], body: bytes) -> str:
    found = pattern.search(body)
    return found.group(1).decode("utf-8", "replace") if found else ""
