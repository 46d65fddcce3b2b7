"""What the server can give: many parallel plain GETs of the scenario's objects, bytes discarded.

URLs are presigned before the clock starts, and each thread keeps one ``http.client``
connection, so the client spends as little as Python allows per request. Several probes
(thread counts; for scenarios with few objects also equal ranges of each object; for big
objects 8 MiB ranges) run on the same fill, and the best one is the ceiling. The others are
reported too: moto reads a whole object for every ranged GET, which the 8 MiB probe shows.
"""

from __future__ import annotations

import http.client
import math
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from benchmarks.dataset import ObjectSpec
from benchmarks.s3 import S3Client
from benchmarks.scenarios import MIB

_BUFFER = 1024 * 1024
_TIMEOUT = 300.0
_PRESIGN_SECONDS = 3600
RANGE_PROBE_PART = 8 * MIB
RANGE_PROBE_THREADS = 16


@dataclass(frozen=True)
class Probe:
    threads: int
    # Bytes per ranged GET; None reads whole objects.
    part_size: int | None = None

    @property
    def label(self) -> str:
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''}"
        if self.part_size is None:
            return f"{threads}, whole objects"
        return f"{threads}, {_mib(self.part_size)} ranges"


def _mib(size: int) -> str:
    return f"{size / MIB:g} MiB"


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    seconds: float
    objects: int
    total_bytes: int

    def rate(self) -> str:
        """Objects per second for small objects, MiB per second for big ones."""
        if self.total_bytes < self.objects * MIB:
            return f"{self.objects / self.seconds:,.0f} obj/s"
        return f"{self.total_bytes / MIB / self.seconds:,.0f} MiB/s"


@dataclass(frozen=True)
class CeilingResult:
    best: ProbeResult
    probes: tuple[ProbeResult, ...]

    def summary(self) -> str:
        """The best probe, then what the others gave (ranged GETs cost moto a whole read)."""
        best = f"best: {self.best.probe.label}"
        others = [f"{r.probe.label} {r.rate()}" for r in self.probes if r is not self.best]
        return f"{best}; others: {'; '.join(others)}" if others else best


@dataclass(frozen=True)
class _Get:
    path: str  # path and query of the presigned URL
    start: int
    length: int
    ranged: bool


class CeilingError(RuntimeError):
    """A probe GET failed: the ceiling would be meaningless."""


def probes(count: int, size: int, levels: Sequence[int]) -> list[Probe]:
    """Whole-object probes at each level; where there are fewer objects than threads, equal
    ranges so that a single 1 GiB object is still read by many connections; and for big
    objects 8 MiB ranges, the part size s3drain and the AWS CLI use by default."""
    found = {Probe(min(level, count)) for level in levels}
    if size < MIB:
        return sorted(found, key=lambda p: p.threads)
    # Up to 16 ranged readers: each ranged GET costs moto a read of the whole object, so 64
    # of them on 1 GiB would take minutes and say nothing the 16 do not.
    for level in levels:
        if count < level <= RANGE_PROBE_THREADS:
            found.add(Probe(level, math.ceil(size / math.ceil(level / count))))
    if size > RANGE_PROBE_PART:
        found.add(Probe(RANGE_PROBE_THREADS, RANGE_PROBE_PART))
    return sorted(found, key=lambda p: (p.part_size or 0, p.threads))


def measure(
    client: S3Client, bucket: str, objects: Sequence[ObjectSpec], levels: Sequence[int]
) -> CeilingResult:
    """Run every probe once against ``client``'s endpoint; the fastest is the ceiling."""
    urls = [_presign(client, bucket, spec.key) for spec in objects]
    size = max(spec.size for spec in objects)
    results = tuple(_run_probe(p, urls, objects) for p in probes(len(objects), size, levels))
    return CeilingResult(min(results, key=lambda r: r.seconds), results)


def _presign(client: S3Client, bucket: str, key: str) -> str:
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=_PRESIGN_SECONDS
    )
    return url


def _gets(probe: Probe, urls: Sequence[str], objects: Sequence[ObjectSpec]) -> list[_Get]:
    work = []
    for url, spec in zip(urls, objects, strict=True):
        parts = urlsplit(url)
        target = f"{parts.path}?{parts.query}"
        step = probe.part_size or max(spec.size, 1)
        for start in range(0, max(spec.size, 1), step):
            length = min(step, spec.size - start)
            work.append(_Get(target, start, length, ranged=probe.part_size is not None))
    return work


def _run_probe(probe: Probe, urls: Sequence[str], objects: Sequence[ObjectSpec]) -> ProbeResult:
    pending: queue.SimpleQueue[_Get] = queue.SimpleQueue()
    for get in _gets(probe, urls, objects):
        pending.put(get)
    address = urlsplit(urls[0])
    errors: list[BaseException] = []
    start_line = threading.Barrier(probe.threads + 1)
    threads = [
        threading.Thread(
            target=_reader,
            args=(address.scheme, address.netloc, pending, start_line, errors),
            name=f"bench-ceiling-{n}",
            daemon=True,  # a stopped bench must not wait for readers to finish their queue
        )
        for n in range(probe.threads)
    ]
    for thread in threads:
        thread.start()
    start_line.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise CeilingError(f"ceiling probe {probe}: {errors[0]!r}") from errors[0]
    return ProbeResult(probe, seconds, len(objects), sum(spec.size for spec in objects))


def _reader(
    scheme: str,
    netloc: str,
    pending: queue.SimpleQueue[_Get],
    start_line: threading.Barrier,
    errors: list[BaseException],
) -> None:
    https = scheme == "https"
    connection_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
    # http.client reconnects by itself when the server closed the last response's connection.
    connection = connection_class(netloc, timeout=_TIMEOUT)
    buffer = memoryview(bytearray(_BUFFER))
    start_line.wait()
    try:
        while not errors:
            try:
                get = pending.get_nowait()
            except queue.Empty:
                return
            _fetch(connection, get, buffer)
    except (OSError, http.client.HTTPException, CeilingError) as exc:
        errors.append(exc)
    finally:
        connection.close()


def _fetch(connection: http.client.HTTPConnection, get: _Get, buffer: memoryview) -> None:
    headers = {"Range": f"bytes={get.start}-{get.start + get.length - 1}"} if get.ranged else {}
    connection.request("GET", get.path, headers=headers)
    response = connection.getresponse()
    received = 0
    while count := response.readinto(buffer):
        received += count
    if response.status not in (200, 206) or received != get.length:
        raise CeilingError(f"GET answered {response.status} with {received} of {get.length} bytes")
