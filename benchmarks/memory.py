"""The in-memory S3 endpoint (benchmarks/memserver.py) as the bench's backend "memory".

It runs in a process of its own (``python -m benchmarks.memserver``), pinned with ``taskset``
for the scaling scenario, and counts requests itself: ``GET /_bench/counts``.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Self

from benchmarks.memstore import COUNTS_PATH
from benchmarks.s3 import DEFAULT_REGION, LOCAL_CREDENTIALS, Target, ensure_bucket, make_client
from benchmarks.seaweed import HOST, process_cpu_seconds
from tests.support.server import stop_process

REPO_ROOT = Path(__file__).resolve().parent.parent
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 5.0


class MemoryServerError(RuntimeError):
    """The server did not start."""


class OwnMemory:
    """``python -m benchmarks.memserver`` on loopback, started and restarted by the bench."""

    def __init__(self, bucket: str, cpus: str | None = None) -> None:
        self._bucket = bucket
        self._cpus = cpus
        self._process: subprocess.Popen[str] | None = None
        self._url = ""
        self._port = 0  # the kernel's choice at the first start, kept at every restart

    @property
    def name(self) -> str:
        return "memory"

    @property
    def description(self) -> str:
        pinned = f", pinned to core(s) {self._cpus}" if self._cpus else ""
        return (
            "the bench's in-memory S3 endpoint `benchmarks/memserver.py` (local, one asyncio "
            f"process; conditional deletes honoured as AWS does; signatures not checked{pinned})"
        )

    @property
    def target(self) -> Target:
        key, secret = LOCAL_CREDENTIALS
        return Target(self._url, self._bucket, DEFAULT_REGION, key, secret)

    def start(self) -> Self:
        argv = [
            *(["taskset", "-c", self._cpus] if self._cpus else []),
            *(sys.executable, "-m", "benchmarks.memserver", "--port", str(self._port)),
        ]
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        self._process = process
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _START_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            self.close()
            raise MemoryServerError(f"benchmarks.memserver did not start (it said {line!r})")
        self._url = line.split()[-1]
        self._port = int(self._url.rsplit(":", 1)[1])
        client = make_client(self.target, pool=1)
        try:
            ensure_bucket(client, self._bucket)
        finally:
            client.close()
        return self

    def fresh(self, prefix: str, restart: bool) -> None:
        # A new process is the quickest way to nothing, and gives big objects' memory back.
        del prefix, restart
        self.close()
        self.start()

    def count_mark(self) -> object | None:
        return self._counts()

    def counts_since(self, mark: object) -> Counter[str]:
        assert isinstance(mark, Counter)
        return self._counts() - mark

    def _counts(self) -> Counter[str]:
        url = f"http://{HOST}:{self._port}{COUNTS_PATH}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return Counter(json.loads(response.read()))

    def cpu_seconds(self) -> float | None:
        if self._process is None:
            return None
        return process_cpu_seconds(self._process.pid)

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, _STOP_TIMEOUT)
            if process.stdout is not None:
                process.stdout.close()
