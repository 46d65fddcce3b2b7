"""A minimal HTTP/1.1 client for `direct.py`: one request at a time on one kept-alive
connection, the response head parsed in one pass, the body framed by Content-Length, chunked
transfer coding, or the end of the connection.

http.client would do, but it builds an email.message for every response head and a file
object per response: for a 4 KiB object that was a third of the CPU a GET cost. Everything a
GET of S3 needs is here, and nothing else (no request bodies, no 100-continue, no redirects).

Imports only the standard library: it runs in the fetch processes too.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl

_RECV = 256 * 1024
# A response head (and, for a small object, its whole body) arrives in one read of this much.
# Below glibc's mmap threshold: a 256 KiB read buffer per answer was an mmap, an mremap and a
# munmap per small object.
_HEAD_RECV = 64 * 1024
_HEAD_LIMIT = 64 * 1024


class LinkFailure(Exception):
    """No (whole) answer: `kind` is connect, connect-timeout, read-timeout, closed or ssl."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Response:
    """A response head, and its body still on the connection."""

    def __init__(self, conn: Http1, status: int, reason: str, headers: dict[str, str]) -> None:
        self._conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case names; a repeated header keeps its last value
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length")
        self._left: int | None = None if self._chunked or length is None else int(length)
        self._chunk_left = 0
        # Without a length or chunks the body ends when the connection does.
        self._keep = _keeps_alive(headers) and (self._chunked or self._left is not None)
        self._done = False
        if self._left == 0:
            self._finish()

    @property
    def finished(self) -> bool:
        """The body was read to its end (the connection can carry the next request)."""
        return self._done

    @property
    def cut_short(self) -> bool:
        """The body ended before its length or its last chunk said it would."""
        return self._done and ((self._left or 0) > 0 or self._chunk_left > 0)

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of the body; b"" at its end, or where the connection ended
        early (the caller's length check tells them apart)."""
        if self._done or size <= 0:
            return b""
        if self._chunked:
            return self._read_chunked(size)
        if self._left is None:
            data = self._conn.take(size)
            if not data:
                self._done = True
            return data
        data = self._conn.take(min(size, self._left))
        if not data:  # cut short: nothing more will come on this connection
            self._conn.close()
            self._done = True
            return b""
        self._left -= len(data)
        if self._left == 0:
            self._finish()
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Like read, into `buffer`: no new buffer per read for a large body (a fresh 256 KiB
        bytes is a fresh mmap, and page faults on first touch)."""
        if self._chunked or self._left is None or self._done:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        count = self._conn.take_into(buffer[: min(len(buffer), self._left)])
        if not count:
            self._conn.close()
            self._done = True
            return 0
        self._left -= count
        if self._left == 0:
            self._finish()
        return count

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self._conn.line()
            try:
                self._chunk_left = int(line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError:
                raise LinkFailure("closed", f"bad chunk size line {line[:40]!r}") from None
            if self._chunk_left == 0:
                while self._conn.line() not in (b"", b"\r\n", b"\n"):
                    pass  # trailers
                self._finish()
                return b""
        data = self._conn.take(min(size, self._chunk_left))
        if not data:
            self._conn.close()
            self._done = True
            return b""
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._conn.line()  # the CRLF after each chunk
        return data

    def _finish(self) -> None:
        self._done = True
        if not self._keep:
            self._conn.close()

    def close(self) -> None:
        if not self._done:  # bytes still on the way: this connection cannot carry another
            self._conn.close()
            self._done = True


def _keeps_alive(headers: dict[str, str]) -> bool:
    return "close" not in headers.get("connection", "").lower()


class Http1:
    """One connection to `host:port` (TLS when `tls` is given), opened on first use and
    reopened after the server or an error closed it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._buf = b""
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def abort(self) -> None:
        """From another thread: the exchange in flight fails now, not at its timeout."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def request(self, head: bytes) -> Response:
        """Send one request (its head, and any body right after it: no 100-continue) and read
        the response head."""
        if self._sock is not None and (self._buf or self._dropped()):
            self.close()  # what the server sent unasked, or its close, ends a kept connection
        sock = self._sock or self._connect()
        try:
            sock.sendall(head)
            status_line, headers = self._head()
        except TimeoutError:
            self.close()
            raise LinkFailure("read-timeout", "no answer within the read timeout") from None
        except ssl.SSLError as exc:
            self.close()
            raise LinkFailure("ssl", f"TLS failed: {exc}") from None
        except OSError as exc:
            self.close()
            raise LinkFailure("closed", f"the connection broke: {exc!r}") from None
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            self.close()
            raise LinkFailure("closed", f"not an HTTP/1.x answer: {status_line[:60]!r}")
        if parts[0] == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
            headers["connection"] = "close"
        return Response(self, int(parts[1]), parts[2] if len(parts) > 2 else "", headers)

    def _head(self) -> tuple[str, dict[str, str]]:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > _HEAD_LIMIT:
                raise OSError("response head too long")
            self._fill()
        block, self._buf = self._buf[:end], self._buf[end + 4 :]
        lines = block.decode("latin-1").split("\r\n")
        if lines[0].split(" ", 2)[1:2] == ["100"]:  # an interim answer: the real one follows
            return self._head()
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return lines[0], headers

    def _fill(self) -> None:
        """More bytes into the buffer; an EOF here means the connection broke."""
        assert self._sock is not None
        data = self._sock.recv(_HEAD_RECV)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self._buf += data

    def take(self, size: int) -> bytes:
        """Up to `size` bytes of the body: buffered first, then straight off the socket;
        b"" at EOF."""
        if self._buf:
            data, self._buf = self._buf[:size], self._buf[size:]
            return data
        if self._sock is None:
            return b""
        try:
            return self._sock.recv(min(size, _RECV))
        except TimeoutError:
            self.close()
            raise LinkFailure("read-timeout", "the body stalled past the read timeout") from None
        except OSError as exc:
            self.close()
            raise LinkFailure("closed", f"the connection broke mid-body: {exc!r}") from None

    def take_into(self, buffer: memoryview) -> int:
        """`take`, into `buffer`; 0 at EOF."""
        if self._buf:
            count = min(len(buffer), len(self._buf))
            buffer[:count] = self._buf[:count]
            self._buf = self._buf[count:]
            return count
        if self._sock is None:
            return 0
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            self.close()
            raise LinkFailure("read-timeout", "the body stalled past the read timeout") from None
        except OSError as exc:
            self.close()
            raise LinkFailure("closed", f"the connection broke mid-body: {exc!r}") from None

    def line(self) -> bytes:
        """One CRLF-terminated line of chunked framing (b"" at EOF)."""
        try:
            while b"\n" not in self._buf and len(self._buf) <= _HEAD_LIMIT:
                self._fill()
        except TimeoutError:
            self.close()
            raise LinkFailure("read-timeout", "the body stalled past the read timeout") from None
        except OSError as exc:
            self.close()
            raise LinkFailure("closed", f"the connection broke mid-body: {exc!r}") from None
        if b"\n" not in self._buf:
            self.close()
            raise LinkFailure("closed", "chunk framing line too long")
        end = self._buf.index(b"\n") + 1
        line, self._buf = self._buf[:end], self._buf[end:]
        return line

    def _dropped(self) -> bool:
        assert self._sock is not None
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._connect_timeout)
        except TimeoutError:
            raise LinkFailure("connect-timeout", "no connection within the timeout") from None
        except OSError as exc:
            raise LinkFailure(
                "connect", f"could not connect to {self._host}:{self._port}: {exc}"
            ) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            kind = "ssl" if isinstance(exc, ssl.SSLError) else "connect"
            raise LinkFailure(kind, f"TLS with {self._host} failed: {exc}") from None
        sock.settimeout(self._read_timeout)
        self._sock = sock
        return sock
