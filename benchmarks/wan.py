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
import subprocess
import sys
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
_BACKLOG = 512


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
        self._listener = socket.create_server((HOST, 0), backlog=_BACKLOG)
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


# --- checking the link ------------------------------------------------------------------------


class ZeroSource:
    """A TCP server that answers each line "N" with N zero bytes: a source as fast as memory,
    so that what a client measures through the relay is the link, not a server."""

    _BLOCK = memoryview(bytes(MIB))

    def __init__(self) -> None:
        self._listener = socket.create_server((HOST, 0), backlog=_BACKLOG)
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="wan-source").start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._listener.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ValueError), conn.makefile("rb") as lines:
            for line in lines:
                remaining = int(line)
                while remaining:
                    step = min(remaining, len(self._BLOCK))
                    conn.sendall(self._BLOCK[:step])
                    remaining -= step

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


def _exchange(port: int, sizes: Sequence[int]) -> list[float]:
    """On one new connection, ask for each size in turn; the seconds each answer took
    (the first includes the connection's set-up)."""
    buffer = bytearray(MIB)
    times = []
    started = time.perf_counter()
    with socket.create_connection((HOST, port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for size in sizes:
            conn.sendall(f"{size}\n".encode())
            received = 0
            while received < size:
                count = conn.recv_into(buffer)
                if not count:
                    raise ConnectionError("the link check's source closed early")
                received += count
            times.append(time.perf_counter() - started)
            started = time.perf_counter()
    return times


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class StreamsResult:
    streams: int
    per_stream: tuple[float, ...]  # bytes per second of each stream
    aggregate: float  # bytes per second, all streams together
    relay_cpu_share: float  # of one core, over the test's wall time


@dataclass(frozen=True)
class LinkCheck:
    delay: float
    rate: int
    direct_rtt: float
    new_connection: float  # first answer of 1 byte on a new connection
    open_connection: float  # the next answer on the same connection
    streams: tuple[StreamsResult, ...]
    stream_bytes: int

    def summary(self) -> str:
        """Markdown: what was measured through the relay, against what it was asked for."""
        cap = self.rate / MIB
        lines = [
            f"Asked for: {self.delay * 1000:.0f} ms each way ({2 * self.delay * 1000:.0f} ms "
            f"round trip) and {cap:g} MiB/s per connection from the server to the client. "
            "Measured through the relay just before the wan scenarios, with a source that "
            "sends zeros as fast as memory allows (so the relay, not a server, is measured):",
            "",
            f"- round trip of a 1-byte request on an open connection: "
            f"{self.open_connection * 1000:.1f} ms (direct: {self.direct_rtt * 1000:.2f} ms)",
            f"- the same on a new connection: {self.new_connection * 1000:.1f} ms (a handshake "
            "round trip, then the request's)",
        ]
        for result in self.streams:
            rates = [rate / MIB for rate in result.per_stream]
            lines.append(
                f"- {result.streams} parallel stream{'s' if result.streams > 1 else ''} of "
                f"{self.stream_bytes / MIB:g} MiB: {min(rates):.1f} to {max(rates):.1f} "
                f"MiB/s each, {result.aggregate / MIB:.1f} MiB/s together; relay CPU "
                f"{100 * result.relay_cpu_share:.0f} % of one core"
            )
        return "\n".join(lines)


CHECK_BYTES = 32 * MIB
_CHECK_STREAMS = (1, 4, 16, 32)
_RTT_SAMPLES = 5


def check_link(
    delay: float = DEFAULT_DELAY, rate: int = DEFAULT_RATE, stream_bytes: int = CHECK_BYTES
) -> LinkCheck:
    """Measure a relay process, started as the bench starts it, in front of a zero source."""
    source = ZeroSource()
    relay = subprocess.Popen(
        [
            *(sys.executable, "-m", "benchmarks.wan", "--upstream", f"{HOST}:{source.port}"),
            *("--delay", str(delay), "--rate", str(rate)),
        ],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert relay.stdout is not None
        port = int(relay.stdout.readline().strip().rsplit(":", 1)[1])
        direct = [_exchange(source.port, [1, 1])[1] for _ in range(_RTT_SAMPLES)]
        through = [_exchange(port, [1, 1]) for _ in range(_RTT_SAMPLES)]
        streams = tuple(_streams(port, relay.pid, n, stream_bytes) for n in _CHECK_STREAMS)
    finally:
        relay.terminate()
        relay.wait()
        if relay.stdout is not None:
            relay.stdout.close()
        source.close()
    return LinkCheck(
        delay=delay,
        rate=rate,
        direct_rtt=_middle(direct),
        new_connection=_middle([times[0] for times in through]),
        open_connection=_middle([times[1] for times in through]),
        streams=streams,
        stream_bytes=stream_bytes,
    )


def _middle(values: Sequence[float]) -> float:
    return sorted(values)[len(values) // 2]


def _streams(port: int, relay_pid: int, count: int, size: int) -> StreamsResult:
    seconds = [0.0] * count

    def one(index: int) -> None:
        seconds[index] = _exchange(port, [size])[0]

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    cpu_before, started = _process_cpu(relay_pid), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu = _process_cpu(relay_pid) - cpu_before
    return StreamsResult(
        streams=count,
        per_stream=tuple(size / s for s in seconds),
        aggregate=count * size / wall,
        relay_cpu_share=cpu / wall,
    )


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
