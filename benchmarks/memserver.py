"""An S3 endpoint in memory for the bench: a server whose cost per request is small beside a
contender's, so that on small objects the contenders' own costs decide.

SeaweedFS, the bench's production server, spends 0.6-0.75 CPU-ms on every small object a
contender drains, more than the contenders themselves (0.45-0.6 ms); on two cores it caps every
contender near 1,600 objects/s and no drain can show that it grows with a second core. This one
keeps the objects in a dict and answers from one asyncio loop with a hand-written HTTP/1.1
parser (measured in every run: the server CPU column).

It speaks what the contenders of the bench send, and as AWS does where s3drain's guarantees rely
on it: ListObjects (V1 and V2: prefix, delimiter, markers, continuation tokens, url encoding),
GetObject and HeadObject (ranges, If-Match / If-None-Match, the stored checksum with checksum
mode), PutObject (plain, or aws-chunked with a trailing checksum), multipart uploads,
DeleteObject with If-Match (412 PreconditionFailed on another ETag, 404 NoSuchKey on a missing
key) and DeleteObjects with per-key ETags (PreconditionFailed / NoSuchKey for that key, the
object kept). What it does not do: versioning, signatures (any signed or unsigned request is
accepted; tests/test_bench_memserver.py pins the rest), persistence.

    python -m benchmarks.memserver --port PORT

Requests are counted by operation, named as the bench's counting proxy names them;
``GET /_bench/counts`` answers them as JSON (no bucket name starts with ``_``, so it cannot shadow
one).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from urllib.parse import parse_qs

from benchmarks.memstore import Request, Response, Store

_REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    416: "Requested Range Not Satisfiable",
    501: "Not Implemented",
}


class Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1, keep-alive, requests answered in order."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._head: tuple[str, str, dict[str, str]] | None = None
        self._need = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._step():
            pass

    def _step(self) -> bool:
        """Take one request from the buffer if it is all there; True when one was answered."""
        buffer = self._buffer
        if self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            del buffer[: end + 4]
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "transfer-encoding" in headers:
                # No client of the bench sends a body of unknown length; say so and hang up
                # rather than misread the rest of the stream.
                self._write(b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\n\r\n")
                if self._transport is not None:
                    self._transport.close()
                return False
            self._head = (method, target, headers)
            self._need = int(headers.get("content-length", "0"))
            if headers.get("expect", "").lower() == "100-continue" and self._need:
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if len(buffer) < self._need:
            return False
        method, target, headers = self._head
        body = bytes(buffer[: self._need])
        del buffer[: self._need]
        self._head = None
        path, _, raw_query = target.partition("?")
        query = parse_qs(raw_query, keep_blank_values=True) if raw_query else {}
        response = self._store.handle(Request(method, path, query, headers, body))
        self._send(response, method == "HEAD")
        if headers.get("connection", "").lower() == "close" and self._transport is not None:
            self._transport.close()
            return False
        return True

    def _send(self, response: Response, head: bool) -> None:
        """The answer; to a HEAD, the GET's answer without its body (its length kept)."""
        length = len(response.body)
        lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}"]
        lines += [f"{name}: {value}" for name, value in response.headers]
        lines.append("x-amz-request-id: 0")
        if response.status not in (204, 304):
            lines.append(f"Content-Length: {length}")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if head or not response.body:
            self._write(head_bytes)
        elif len(response.body) < 65536:
            self._write(head_bytes + bytes(response.body))
        else:
            self._write(head_bytes)
            self._write(response.body)

    def _write(self, data: bytes | memoryview) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


async def serve(host: str, port: int) -> None:
    store = Store()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(store), host, port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening on http://{host}:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
