"""A WAN link for the bench: one-way delay in both directions and a per-connection download cap.

    python -m benchmarks.wan --upstream HOST:PORT [--delay 0.01] [--rate 16777216]
                             [--stats-file FILE]

A TCP relay in its own process: the URL it listens on is the first line of stdout, and on
SIGTERM it writes its own CPU time and byte counts to ``--stats-file`` as JSON.

Why user space and not the kernel: this machine's kernel has neither ``netem`` nor ``fq``
(CONFIG_NET_SCH_NETEM and CONFIG_NET_SCH_FQ are off; only htb, tbf and fifo exist), so a
network namespace with ``tc`` could cap rates but never add delay. The cap is still the
kernel's: every socket towards the client gets ``SO_MAX_PACING_RATE``, which turns on TCP's
own per-connection pacing (no qdisc needed since Linux 4.13). The relay only holds each chunk
until its delay is over, copying bytes, never parsing them: HTTP and TLS pass unchanged.

The model of a new connection: the kernel completes the client's handshake at once on
loopback, so the client's first bytes are held one extra round trip, as the SYN/SYN-ACK over
a real link would cost them. moto closes the connection after every response, so each request
pays that round trip too, on every contender alike.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

HOST = "127.0.0.1"
MIB = 1024 * 1024
DEFAULT_DELAY = 0.010  # each way: a 20 ms round trip
DEFAULT_RATE = 16 * MIB  # bytes per second, per connection, server to client
# Linux's SO_MAX_PACING_RATE (asm-generic/socket.h); Python's socket module does not name it.
SO_MAX_PACING_RATE = 47
_CHUNK = 256 * 1024
# Bytes a direction may hold in its delay line before it stops reading: several times what a
# 20 ms delay holds at the capped rate, so the cap and not this limit sets the pace, yet small
# enough that a 1 GiB body is never held whole.
_QUEUE_LIMIT = 4 * MIB
BACKLOG = 512


@dataclass
class Stats:
    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    peak_connections: int = 0
    open_connections: int = 0


class _DelayLine:
    """Chunks in arrival order, each released ``delay`` seconds after it was read."""

    def __init__(self, delay: float, limit: int) -> None:
        self._delay = delay
        self._limit = limit
        self._items: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self._held = 0
        self._abandoned = False
        self._ready = threading.Condition()

    def put(self, data: bytes | None, not_before: float = 0.0) -> None:
        """Queue ``data`` (None: the end of the stream); blocks while the line is full."""
        with self._ready:
            while data and self._held >= self._limit and not self._abandoned:
                self._ready.wait()
            if self._abandoned:
                return
            due = max(time.monotonic(), not_before) + self._delay
            self._items.append((due, data))
            self._held += len(data or b"")
            self._ready.notify_all()

    def get(self) -> bytes | None:
        """The next chunk once it is due."""
        with self._ready:
            while not self._items:
                self._ready.wait()
            due, data = self._items.popleft()
            self._held -= len(data or b"")
            self._ready.notify_all()
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return data

    def abandon(self) -> None:
        """Nobody will take from the line any more: a reader blocked on a full line goes on."""
        with self._ready:
            self._abandoned = True
            self._items.clear()
            self._ready.notify_all()


class Relay:
    """Listens on ``HOST``; every accepted connection gets its own to ``upstream``."""

    def __init__(
        self, upstream: tuple[str, int], delay: float = DEFAULT_DELAY, rate: int = DEFAULT_RATE
    ) -> None:
        self.upstream = upstream
        self.delay = delay
        self.rate = rate
        self.stats = Stats()
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0), backlog=BACKLOG)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def serve_forever(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                if self._closed.is_set():
                    return
                raise
            accepted = time.monotonic()
            threading.Thread(
                target=self._connection, args=(client, accepted), daemon=True, name="wan-conn"
            ).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _count(self, up: int = 0, down: int = 0, opened: int = 0) -> None:
        with self._lock:
            self.stats.bytes_up += up
            self.stats.bytes_down += down
            self.stats.connections += max(opened, 0)
            self.stats.open_connections += opened
            self.stats.peak_connections = max(
                self.stats.peak_connections, self.stats.open_connections
            )

    def _connection(self, client: socket.socket, accepted: float) -> None:
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.rate:
            client.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, self.rate)
        self._count(opened=1)
        # The client's first bytes left after a handshake a real link would have delayed by
        # one round trip.
        handshake = accepted + 2 * self.delay
        pumps = [
            threading.Thread(
                target=self._pump, args=(client, server, handshake, True), daemon=True
            ),
            threading.Thread(target=self._pump, args=(server, client, 0.0, False), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        client.close()
        server.close()
        self._count(opened=-1)

    def _pump(self, src: socket.socket, dst: socket.socket, not_before: float, up: bool) -> None:
        line = _DelayLine(self.delay, _QUEUE_LIMIT)
        writer = threading.Thread(target=self._drain_line, args=(line, dst, src), daemon=True)
        writer.start()
        try:
            while data := src.recv(_CHUNK):
                line.put(data, not_before)
                if up:
                    self._count(up=len(data))
                else:
                    self._count(down=len(data))
        except OSError:
            pass
        line.put(None)
        writer.join()

    @staticmethod
    def _drain_line(line: _DelayLine, dst: socket.socket, src: socket.socket) -> None:
        try:
            while (data := line.get()) is not None:
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            # The far side is gone: stop the reader of this direction too, also when it waits
            # for room in the line.
            line.abandon()
            with contextlib.suppress(OSError):
                src.shutdown(socket.SHUT_RDWR)


# --- the relay process ------------------------------------------------------------------------


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def write_stats(relay: Relay, path: Path, started: float) -> None:
    user, system = cpu_seconds()
    data = {
        "user": user,
        "system": system,
        "wall": time.monotonic() - started,
        "connections": relay.stats.connections,
        "peak_connections": relay.stats.peak_connections,
        "bytes_up": relay.stats.bytes_up,
        "bytes_down": relay.stats.bytes_down,
    }
    path.write_text(json.dumps(data))


def _upstream(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or HOST, int(port)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _exit_with(parent: int) -> None:
    """A bench killed by SIGKILL cannot stop its relay: the relay leaves when it is orphaned."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--upstream", required=True, type=_upstream, help="HOST:PORT")
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY, help="seconds, each way")
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, help="bytes/s per connection")
    parser.add_argument("--stats-file", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    relay = Relay(args.upstream, args.delay, args.rate)
    print(relay.url, flush=True)
    try:
        relay.serve_forever()
    finally:
        relay.close()
        if args.stats_file is not None:
            write_stats(relay, args.stats_file, started)


if __name__ == "__main__":
    main()
