"""A reverse HTTP proxy in front of an S3 endpoint that counts operations and injects faults.

Point an S3 client at ``FaultProxy(upstream).url`` with path-style addressing. The proxy
classifies each request as an S3 operation, counts it, and - at ``fault_rate`` - answers it
with an error, cuts the connection before or after the upstream executed it, truncates the
response body or stalls it. Bodies are streamed in both directions, never held whole.

Run ``python -m tests.support.proxy --upstream URL`` to have it as its own process: the URL is
the first line of stdout, and on SIGTERM/SIGINT the counts are written to ``--counts-file``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import random
import signal
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qsl, unquote, urlsplit

HOST = "127.0.0.1"

ERROR_FAULTS = ("503", "500", "502", "504")
FAULT_KINDS = (
    *ERROR_FAULTS,
    "reset_before",
    "reset_after",
    "drop_response",
    "truncate",
    "stall",
)

# Status, reason, S3 error code, message - what S3 (or a load balancer before it) sends.
_ERROR_REPLIES: dict[str, tuple[int, str, str, str]] = {
    "503": (503, "Service Unavailable", "SlowDown", "Please reduce your request rate."),
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error."),
    "502": (502, "Bad Gateway", "BadGateway", "The gateway received an invalid response."),
    "504": (504, "Gateway Timeout", "GatewayTimeout", "The gateway timed out."),
}

_CHUNK = 256 * 1024
# Bodies up to this size travel in the same send as their headers: one syscall, not two.
_SMALL_BODY = 64 * 1024
_MAX_LINE = 65536
_UPSTREAM_TIMEOUT = 300.0
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",  # re-added from the framing we actually use
    }
)

Headers = list[tuple[str, str]]


# --- S3 operation names ---------------------------------------------------------------------

# (method, query parameter) -> operation; the first parameter present wins, so order matters.
_BUCKET_SUBRESOURCE_OPS: tuple[tuple[str, str, str], ...] = (
    ("GET", "list-type", "ListObjectsV2"),
    ("GET", "versions", "ListObjectVersions"),
    ("GET", "uploads", "ListMultipartUploads"),
    ("GET", "versioning", "GetBucketVersioning"),
    ("PUT", "versioning", "PutBucketVersioning"),
    ("GET", "location", "GetBucketLocation"),
    ("GET", "tagging", "GetBucketTagging"),
    ("GET", "lifecycle", "GetBucketLifecycleConfiguration"),
    ("PUT", "lifecycle", "PutBucketLifecycleConfiguration"),
    ("GET", "policy", "GetBucketPolicy"),
    ("PUT", "policy", "PutBucketPolicy"),
    ("POST", "delete", "DeleteObjects"),
)
_OBJECT_SUBRESOURCE_OPS: tuple[tuple[str, str, str], ...] = (
    ("PUT", "uploadId", "UploadPart"),
    ("POST", "uploads", "CreateMultipartUpload"),
    ("POST", "uploadId", "CompleteMultipartUpload"),
    ("DELETE", "uploadId", "AbortMultipartUpload"),
    ("GET", "uploadId", "ListParts"),
    ("GET", "tagging", "GetObjectTagging"),
    ("PUT", "tagging", "PutObjectTagging"),
    ("DELETE", "tagging", "DeleteObjectTagging"),
    ("GET", "attributes", "GetObjectAttributes"),
)
_BUCKET_PLAIN_OPS = {
    "GET": "ListObjects",
    "HEAD": "HeadBucket",
    "PUT": "CreateBucket",
    "DELETE": "DeleteBucket",
}
_OBJECT_PLAIN_OPS = {
    "GET": "GetObject",
    "HEAD": "HeadObject",
    "PUT": "PutObject",
    "DELETE": "DeleteObject",
}
# Query parameters that name a different operation than the plain method would; any of these
# not in the tables above makes a request "Other" rather than, say, a GetObject.
_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
        "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "location", "logging",
        "metrics", "notification", "object-lock", "ownershipControls", "policy",
        "policyStatus", "publicAccessBlock", "replication", "requestPayment", "restore",
        "retention", "select", "tagging", "torrent", "uploadId", "uploads", "versioning",
        "versions", "website",
    }
)  # fmt: skip


def split_target(target: str) -> tuple[str, str, str, dict[str, str]]:
    """Split a path-style request target into (path, bucket, key, query parameters)."""
    path, _, query = target.partition("?")
    bucket, _, key = path.lstrip("/").partition("/")
    params = dict(parse_qsl(query, keep_blank_values=True))
    return path, unquote(bucket), unquote(key), params


def s3_operation(
    method: str, bucket: str, key: str, params: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    """Name the S3 operation of a path-style request; ``headers`` have lower-case names."""
    if not bucket:
        return "ListBuckets" if method == "GET" else "Other"
    table = _OBJECT_SUBRESOURCE_OPS if key else _BUCKET_SUBRESOURCE_OPS
    for op_method, param, op in table:
        if method == op_method and param in params:
            if op == "UploadPart" and "x-amz-copy-source" in headers:
                return "UploadPartCopy"
            return op
    if _SUBRESOURCES.intersection(params):
        return "Other"
    op = (_OBJECT_PLAIN_OPS if key else _BUCKET_PLAIN_OPS).get(method, "Other")
    if op == "PutObject" and "x-amz-copy-source" in headers:
        return "CopyObject"
    return op


# --- public types ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxySettings:
    """What the proxy does to traffic; swap at runtime with ``FaultProxy.configure``."""

    latency: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    # None means every operation may be faulted.
    fault_ops: frozenset[str] | None = None
    # At most this many faults after the last configure()/reset_counts(); None is unlimited.
    max_faults: int | None = None
    stall_seconds: float = 5.0
    seed: int | None = None
    record_log: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown or not self.fault_kinds:
            raise ValueError(f"fault_kinds must be a non-empty subset of {FAULT_KINDS}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        if self.latency < 0 or self.stall_seconds < 0:
            raise ValueError("latency and stall_seconds must not be negative")


@dataclass(frozen=True)
class RequestInfo:
    """A request about to be forwarded, as the ``before_forward`` hook sees it."""

    op: str
    method: str
    path: str
    query: Mapping[str, str]
    # Lower-case names.
    headers: Mapping[str, str]
    bucket: str = ""
    key: str = ""
    # A DeleteObjects request's XML body (it names the keys; a hook cannot see them otherwise),
    # read before the hook when it is small; None for every other request.
    body: bytes | None = None


class LogEntry(NamedTuple):
    op: str
    # The status the client got, or the upstream's when the client got no response; 0 when
    # the request was never forwarded nor answered.
    status: int
    fault: str | None


Hook = Callable[[RequestInfo], None]


# --- HTTP plumbing --------------------------------------------------------------------------


class ProtocolError(Exception):
    """A peer sent something that is not HTTP/1.1 as we speak it."""


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: Headers
    lower: dict[str, str]

    @property
    def keep_alive(self) -> bool:
        if self.version != "HTTP/1.1":
            return False
        return "close" not in self.lower.get("connection", "").lower()

    @property
    def expects_continue(self) -> bool:
        return self.lower.get("expect", "").lower() == "100-continue"


@dataclass
class _Response:
    status: int
    reason: str
    headers: Headers
    lower: dict[str, str]
    # Bytes left to read: an int, "chunked", "close" (read to EOF) or 0 for no body.
    framing: int | str = 0
    keep_alive: bool = True


def _read_head(rfile: io.BufferedReader) -> tuple[str, Headers] | None:
    """Read a start line and headers; None on a clean EOF before the start line."""
    line = rfile.readline(_MAX_LINE)
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore blank lines before a request
        line = rfile.readline(_MAX_LINE)
    if not line:
        return None
    headers: Headers = []
    while True:
        raw = rfile.readline(_MAX_LINE)
        if raw in (b"\r\n", b"\n"):
            break
        if not raw.endswith(b"\n"):
            raise ProtocolError("connection closed or line too long in headers")
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line {raw!r}")
        headers.append((name.strip(), value.strip()))
    return line.decode("latin-1").rstrip("\r\n"), headers


def _lower(headers: Headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _request_framing(lower: Mapping[str, str]) -> int | str:
    if "chunked" in lower.get("transfer-encoding", "").lower():
        return "chunked"
    return int(lower.get("content-length", "0"))


def _response_framing(method: str, status: int, lower: Mapping[str, str]) -> int | str:
    if method == "HEAD" or status < 200 or status in (204, 304):
        return 0
    if "chunked" in lower.get("transfer-encoding", "").lower():
        return "chunked"
    if "content-length" in lower:
        return int(lower["content-length"])
    return "close"


def _format_head(start: str, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _framing_headers(framing: int | str) -> Headers:
    if framing in ("chunked", "close"):
        return [("Transfer-Encoding", "chunked")]
    return [("Content-Length", str(framing))]


def _end_to_end(headers: Headers) -> Headers:
    return [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP]


def _read_exact(rfile: io.BufferedReader, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) != size:
        raise ProtocolError(f"body ended after {len(data)} of {size} bytes")
    return data


def _iter_body(rfile: io.BufferedReader, framing: int | str) -> Iterable[bytes]:
    """Yield a message body in pieces of at most _CHUNK bytes, decoding chunked framing."""
    if framing == "chunked":
        yield from _iter_chunked(rfile)
    elif framing == "close":
        while data := rfile.read1(_CHUNK):
            yield data
    else:
        assert isinstance(framing, int)
        remaining = framing
        while remaining:
            data = _read_exact(rfile, min(remaining, _CHUNK))
            remaining -= len(data)
            yield data


def _iter_chunked(rfile: io.BufferedReader) -> Iterable[bytes]:
    while True:
        size_line = rfile.readline(_MAX_LINE)
        if not size_line.endswith(b"\n"):
            raise ProtocolError("chunked body ended early")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        while size:
            data = _read_exact(rfile, min(size, _CHUNK))
            size -= len(data)
            yield data
        _read_exact(rfile, 2)  # CRLF after the chunk data
    while rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):  # trailers we drop
        pass


def _encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _send_body(sock: socket.socket, pieces: Iterable[bytes], framing: int | str) -> None:
    chunked = framing in ("chunked", "close")
    for data in pieces:
        sock.sendall(_encode_chunk(data) if chunked else data)
    if chunked:
        sock.sendall(b"0\r\n\r\n")


def _tune(sock: socket.socket) -> None:
    # Without TCP_NODELAY a head sent apart from its body waits out the peer's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _close(sock: socket.socket, rfile: io.BufferedReader | None, *, reset: bool) -> None:
    """Close a connection; with ``reset`` the peer gets an RST, not an orderly FIN."""
    with contextlib.suppress(OSError):
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_WR)
    if rfile is not None:
        rfile.close()  # the socket stays open while a makefile() reader is
    sock.close()


class _Upstream:
    """One connection to the upstream server, reopened whenever the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self.sock: socket.socket | None = None
        self.rfile: io.BufferedReader | None = None
        self.reused = False

    def connect(self) -> tuple[socket.socket, io.BufferedReader]:
        if self.sock is not None and self.rfile is not None:
            self.reused = True
            return self.sock, self.rfile
        self.sock = socket.create_connection(self._address, timeout=_UPSTREAM_TIMEOUT)
        _tune(self.sock)
        self.rfile = self.sock.makefile("rb")
        self.reused = False
        return self.sock, self.rfile

    def close(self) -> None:
        sock, rfile, self.sock, self.rfile = self.sock, self.rfile, None, None
        if sock is not None:
            _close(sock, rfile, reset=False)


@dataclass
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    log: list[LogEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    faults_since_configure: int = 0


# --- the proxy ------------------------------------------------------------------------------


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        assert isinstance(self.request, socket.socket)
        self.server.proxy._serve_connection(self.request)


class FaultProxy:
    """``with FaultProxy(upstream_url) as proxy: proxy.url`` - see the module docstring."""

    def __init__(
        self,
        upstream: str,
        settings: ProxySettings | None = None,
        *,
        before_forward: Hook | None = None,
        port: int = 0,
        **setting_values: Any,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._settings = dataclasses.replace(settings or ProxySettings(), **setting_values)
        self._rng = random.Random(self._settings.seed)
        self.before_forward = before_forward
        self._stats = _Stats()
        self._stopping = threading.Event()
        self._clients: set[socket.socket] = set()
        self._server = _Server((HOST, port), self)
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def settings(self) -> ProxySettings:
        return self._settings

    # --- lifecycle

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections and end stalls."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        with self._stats.lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- settings and statistics

    def configure(self, **changes: Any) -> ProxySettings:
        """Change settings (e.g. ``fault_rate=0``) for requests that arrive from now on."""
        settings = dataclasses.replace(self._settings, **changes)
        with self._stats.lock:
            if "seed" in changes:
                self._rng.seed(settings.seed)
            self._stats.faults_since_configure = 0
            self._settings = settings
        return settings

    def counts(self) -> dict[str, int]:
        """Requests received per S3 operation, faulted ones included."""
        with self._stats.lock:
            return dict(self._stats.counts)

    def fault_counts(self) -> dict[str, int]:
        """Faults injected per kind."""
        with self._stats.lock:
            return dict(self._stats.faults)

    def log(self) -> list[LogEntry]:
        """One entry per finished request, if ``record_log`` is set."""
        with self._stats.lock:
            return list(self._stats.log)

    def errors(self) -> list[str]:
        """Problems the proxy met that were not injected: a test may assert there are none."""
        with self._stats.lock:
            return list(self._stats.errors)

    def reset_counts(self) -> None:
        with self._stats.lock:
            self._stats.counts.clear()
            self._stats.faults.clear()
            self._stats.log.clear()
            self._stats.errors.clear()
            self._stats.faults_since_configure = 0

    def _record(self, op: str, status: int, fault: str | None) -> None:
        if self._settings.record_log:
            with self._stats.lock:
                self._stats.log.append(LogEntry(op, status, fault))

    def _record_error(self, message: str) -> None:
        with self._stats.lock:
            self._stats.errors.append(message)

    def _count_and_pick_fault(self, op: str) -> str | None:
        settings = self._settings
        with self._stats.lock:
            self._stats.counts[op] += 1
            if settings.fault_rate <= 0.0:
                return None
            if settings.fault_ops is not None and op not in settings.fault_ops:
                return None
            if (
                settings.max_faults is not None
                and self._stats.faults_since_configure >= settings.max_faults
            ):
                return None
            if self._rng.random() >= settings.fault_rate:
                return None
            kind = self._rng.choice(settings.fault_kinds)
            self._stats.faults[kind] += 1
            self._stats.faults_since_configure += 1
            return kind

    # --- per connection

    def _serve_connection(self, sock: socket.socket) -> None:
        _tune(sock)
        rfile = sock.makefile("rb")
        upstream = _Upstream(*self._upstream)
        with self._stats.lock:
            self._clients.add(sock)
        keep_open = True
        try:
            while keep_open and not self._stopping.is_set():
                head = _read_head(rfile)
                if head is None:
                    break
                keep_open = self._serve_request(sock, rfile, upstream, _parse_request(*head))
        except (OSError, ProtocolError, ValueError) as exc:
            if not self._stopping.is_set() and not isinstance(exc, ConnectionError):
                self._record_error(f"{type(exc).__name__}: {exc}")
            keep_open = False
        finally:
            with self._stats.lock:
                self._clients.discard(sock)
            upstream.close()
            if sock.fileno() != -1:
                _close(sock, rfile, reset=False)

    def _serve_request(
        self,
        sock: socket.socket,
        rfile: io.BufferedReader,
        upstream: _Upstream,
        request: _Request,
    ) -> bool:
        """Handle one request; return whether the client connection stays open."""
        path, bucket, key, params = split_target(request.target)
        op = s3_operation(request.method, bucket, key, params, request.lower)
        fault = self._count_and_pick_fault(op)
        if fault == "reset_before":
            self._record(op, 0, fault)
            _close(sock, rfile, reset=True)
            return False
        if fault in ERROR_FAULTS:
            return self._answer_error(sock, rfile, request, op, fault)
        body = self._read_small_body(sock, rfile, request) if op == "DeleteObjects" else None
        info = RequestInfo(op, request.method, path, params, request.lower, bucket, key, body)
        if not self._run_hook(info, sock, rfile, request, body_read=body is not None):
            return request.keep_alive
        try:
            response = self._forward(sock, rfile, upstream, request, body)
        except (OSError, ProtocolError) as exc:
            upstream.close()
            self._record_error(f"upstream {op}: {type(exc).__name__}: {exc}")
            self._record(op, 502, None)
            self._send_error(
                sock, 502, "Bad Gateway", "ProxyUpstreamError", str(exc), keep_alive=False
            )
            return False
        # Entries are recorded before the client can see the outcome, so a test that asserts
        # right after its call returns finds them.
        self._record(op, response.status, fault)
        if fault is None:
            return self._relay(sock, request, upstream, response)
        if fault == "truncate":
            self._truncate(sock, request, upstream, response)
        else:
            upstream.close()
            if fault == "stall":
                self._stopping.wait(self._settings.stall_seconds)
        _close(sock, rfile, reset=fault == "reset_after")
        return False

    def _read_small_body(
        self, sock: socket.socket, rfile: io.BufferedReader, request: _Request
    ) -> bytes | None:
        """The whole body, if it has a Content-Length of at most _SMALL_BODY; else None (and
        nothing read)."""
        framing = _request_framing(request.lower)
        if not isinstance(framing, int) or framing > _SMALL_BODY:
            return None
        if request.expects_continue:
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return _read_exact(rfile, framing)

    def _run_hook(
        self,
        info: RequestInfo,
        sock: socket.socket,
        rfile: io.BufferedReader,
        request: _Request,
        *,
        body_read: bool = False,
    ) -> bool:
        """Call before_forward; on failure answer 500 so the test sees it, and return False."""
        hook = self.before_forward
        if hook is None:
            return True
        try:
            hook(info)
        except Exception as exc:
            self._record_error(f"before_forward hook: {exc!r}")
            if not body_read:
                self._drain_request(sock, rfile, request)
            message = f"before_forward hook raised {exc!r}"
            self._record(info.op, 500, None)
            self._send_error(
                sock, 500, "Internal Server Error", "ProxyHookError", message, keep_alive=True
            )
            return False
        return True

    def _drain_request(
        self, sock: socket.socket, rfile: io.BufferedReader, request: _Request
    ) -> None:
        if request.expects_continue:
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        for _ in _iter_body(rfile, _request_framing(request.lower)):
            pass

    def _answer_error(
        self,
        sock: socket.socket,
        rfile: io.BufferedReader,
        request: _Request,
        op: str,
        fault: str,
    ) -> bool:
        # Reading the body first keeps the connection usable, as S3 itself does.
        self._drain_request(sock, rfile, request)
        status, reason, code, message = _ERROR_REPLIES[fault]
        body = request.method != "HEAD"
        self._record(op, status, fault)
        self._send_error(
            sock, status, reason, code, message, keep_alive=request.keep_alive, body=body
        )
        return request.keep_alive

    def _send_error(
        self,
        sock: socket.socket,
        status: int,
        reason: str,
        code: str,
        message: str,
        *,
        keep_alive: bool,
        body: bool = True,
    ) -> None:
        payload = _error_xml(code, message) if body else b""
        headers: Headers = [("Content-Type", "application/xml")]
        headers += [("Content-Length", str(len(payload)))]
        if not keep_alive:
            headers.append(("Connection", "close"))
        self._delay()
        sock.sendall(_format_head(f"HTTP/1.1 {status} {reason}", headers) + payload)

    def _delay(self) -> None:
        latency = self._settings.latency
        if latency > 0:
            time.sleep(latency)

    def _forward(
        self,
        sock: socket.socket,
        rfile: io.BufferedReader,
        upstream: _Upstream,
        request: _Request,
        body: bytes | None = None,
    ) -> _Response:
        """Send the request upstream, streaming its body (or the `body` already read), and
        read the response head."""
        framing = _request_framing(request.lower)
        headers = _end_to_end(request.headers) + _framing_headers(framing)
        head = _format_head(f"{request.method} {request.target} HTTP/1.1", headers)
        if body is not None:
            return self._send_small(upstream, head + body, request)
        if request.expects_continue:
            # We answer the Expect ourselves, so upstream never sees it.
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if isinstance(framing, int) and framing <= _SMALL_BODY:
            return self._send_small(upstream, head + _read_exact(rfile, framing), request)
        up_sock, up_rfile = upstream.connect()
        up_sock.sendall(head)
        _send_body(up_sock, _iter_body(rfile, framing), framing)
        return _read_response(up_rfile, request.method)

    def _send_small(self, upstream: _Upstream, message: bytes, request: _Request) -> _Response:
        up_sock, up_rfile = upstream.connect()
        try:
            up_sock.sendall(message)
            return _read_response(up_rfile, request.method)
        except (OSError, ProtocolError):
            # A kept-alive upstream connection may have been closed while idle; the request
            # never reached the server then, so sending it once more is safe.
            if not upstream.reused:
                raise
            upstream.close()
            up_sock, up_rfile = upstream.connect()
            up_sock.sendall(message)
            return _read_response(up_rfile, request.method)

    def _relay(
        self,
        sock: socket.socket,
        request: _Request,
        upstream: _Upstream,
        response: _Response,
    ) -> bool:
        """Send the response to the client, streaming the body; return keep-alive."""
        keep_alive = request.keep_alive
        head = self._response_head(response, keep_alive)
        up_rfile = upstream.rfile
        assert up_rfile is not None
        framing = response.framing
        self._delay()
        if isinstance(framing, int) and framing <= _SMALL_BODY:
            sock.sendall(head + _read_exact(up_rfile, framing))
        else:
            sock.sendall(head)
            _send_body(sock, _iter_body(up_rfile, framing), framing)
        if not response.keep_alive:
            upstream.close()
        return keep_alive

    def _truncate(
        self, sock: socket.socket, request: _Request, upstream: _Upstream, response: _Response
    ) -> None:
        """Send the head and about half the body; with no body, part of the status line."""
        head = self._response_head(response, request.keep_alive)
        up_rfile = upstream.rfile
        assert up_rfile is not None
        framing = response.framing
        self._delay()
        if framing == 0:
            # A client takes EOF among the headers for their end, so only a cut status line
            # makes a bodyless response visibly broken.
            sock.sendall(head[: head.index(b" ") + 2])
        elif isinstance(framing, int):
            sock.sendall(head)
            _send_body(sock, _iter_body(up_rfile, framing // 2), framing // 2)
        else:
            # Unknown length: half of the first piece, and no terminating chunk.
            first = next(iter(_iter_body(up_rfile, framing)), b"")
            sock.sendall(head + _encode_chunk(first[: max(1, len(first) // 2)]))
        upstream.close()

    def _response_head(self, response: _Response, keep_alive: bool) -> bytes:
        headers = _end_to_end(response.headers)
        if not isinstance(response.framing, int):
            headers += _framing_headers(response.framing)
        elif "content-length" in response.lower:
            # Passed on as is: a HEAD answer states the length of a body it does not carry.
            headers.append(("Content-Length", response.lower["content-length"]))
        if not keep_alive:
            headers.append(("Connection", "close"))
        return _format_head(f"HTTP/1.1 {response.status} {response.reason}", headers)


def _parse_request(start: str, headers: Headers) -> _Request:
    parts = start.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ProtocolError(f"malformed request line {start!r}")
    method, target, version = parts
    return _Request(method, target, version, headers, _lower(headers))


def _read_response(rfile: io.BufferedReader, method: str) -> _Response:
    while True:
        head = _read_head(rfile)
        if head is None:
            raise ProtocolError("upstream closed the connection without a response")
        start, headers = head
        version, _, rest = start.partition(" ")
        status_text, _, reason = rest.partition(" ")
        status = int(status_text)
        if status >= 200 or status == 101:
            break
    lower = _lower(headers)
    keep_alive = version == "HTTP/1.1" and "close" not in lower.get("connection", "").lower()
    framing = _response_framing(method, status, lower)
    return _Response(status, reason, headers, lower, framing, keep_alive and framing != "close")


def _error_xml(code: str, message: str) -> bytes:
    request_id = f"{random.getrandbits(64):016X}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- command line ---------------------------------------------------------------------------


def _names(values: list[str]) -> list[str]:
    """Accept both ``--x a b`` and ``--x a,b``."""
    return [name for value in values for name in value.split(",") if name]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fault-injecting S3 reverse proxy.")
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:5000")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per response")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-kinds", nargs="+", default=list(FAULT_KINDS))
    parser.add_argument("--fault-ops", nargs="+", default=None, help="default: all")
    parser.add_argument("--max-faults", type=int, default=None)
    parser.add_argument("--stall-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--counts-file", type=Path, default=None)
    return parser.parse_args(argv)


def _settings_from(args: argparse.Namespace) -> ProxySettings:
    return ProxySettings(
        latency=args.latency,
        fault_rate=args.fault_rate,
        fault_kinds=tuple(_names(args.fault_kinds)),
        fault_ops=frozenset(_names(args.fault_ops)) if args.fault_ops else None,
        max_faults=args.max_faults,
        stall_seconds=args.stall_seconds,
        seed=args.seed,
    )


def write_counts(proxy: FaultProxy, path: Path) -> None:
    """Write ``{"counts": {op: n}, "faults": {kind: n}}``; atomically, for a waiting reader."""
    data = {"counts": proxy.counts(), "faults": proxy.fault_counts()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with FaultProxy(args.upstream, _settings_from(args), port=args.port) as proxy:
        print(proxy.url, flush=True)
        # A timed wait lets the signal handler run promptly on the main thread.
        while not stop.wait(0.2):
            pass
    if args.counts_file is not None:
        write_counts(proxy, args.counts_file)


if __name__ == "__main__":
    main()
