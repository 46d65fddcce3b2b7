"""Measure a link relay before trusting figures taken over it.

Every bench with a wan or cloud scenario first starts the relay exactly as a run starts it, in
front of a source that sends zeros as fast as memory allows (so nothing but the relay is
measured), and reports round trips and per-stream rates against what was asked for.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.wan import BACKLOG, DEFAULT_DELAY, DEFAULT_RATE, HOST, MIB


class ZeroSource:
    """A TCP server that answers each line "N" with N zero bytes: a source as fast as memory,
    so that what a client measures through the relay is the link, not a server."""

    _BLOCK = memoryview(bytes(MIB))

    def __init__(self) -> None:
        self._listener = socket.create_server((HOST, 0), backlog=BACKLOG)
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
            f"Asked for: {self.delay * 1000:g} ms each way ({2 * self.delay * 1000:.0f} ms "
            f"round trip) and {cap:g} MiB/s per connection from the server to the client. "
            "Measured through the relay before the scenarios over this link, with a source that "
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
