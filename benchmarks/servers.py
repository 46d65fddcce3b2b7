"""The server a bench talks to, the latency proxy in front of it, and who counts the requests.

Our own servers run in their own processes and count for us: moto
(``tests.support.server.MotoServer`` spawns ``python -m tests.support.moto_etag_blind``) in its
request log, a file we own, and SeaweedFS in its Prometheus metrics (benchmarks/seaweed.py).
Reading either costs nothing, whereas a Python proxy in the path of every run would take one of
this machine's two cores from the contenders. The proxy (``python -m tests.support.proxy``, its own
process) is used where it is needed anyway: the latency scenario, and an external endpoint,
whose log we cannot read. The wan scenarios put a link relay (``python -m benchmarks.wan``, a
TCP relay that neither parses nor counts) in front of whichever of those the run would use.

moto is ``python -m benchmarks.moto_server``: moto's server with its SQS made to cost the same
per message however deep the queue (see that module), which also writes each SQS request's
action to the log; ``count_log_lines`` leaves those requests out of the S3 counts and
``count_sqs_lines`` counts them.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self
from urllib.parse import urlsplit

from benchmarks.moto_server import S3DRAIN_CLIENT, SQS_LINE
from benchmarks.s3 import DEFAULT_REGION, LOCAL_CREDENTIALS, Target, empty_prefix, make_client
from benchmarks.scenarios import Link
from benchmarks.seaweed import process_cpu_seconds
from tests.support.proxy import s3_operation, split_target
from tests.support.server import MotoServer, stop_process

REPO_ROOT = Path(__file__).resolve().parent.parent
_PROXY_START_TIMEOUT = 20.0
_PROXY_STOP_TIMEOUT = 10.0

# werkzeug colours some request lines (206, 404, ...) even when writing to a file.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REQUEST_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3})')
_SQS_LINE = re.compile(rf"^{SQS_LINE} (\w+) (\w+)$", re.MULTILINE)


class Backend(Protocol):
    @property
    def target(self) -> Target: ...

    @property
    def name(self) -> str:
        """Short: moto-aws-like, moto, seaweedfs, external."""

    @property
    def description(self) -> str: ...

    def fresh(self, prefix: str, restart: bool) -> None:
        """Make the server hold nothing under ``prefix`` before the next fill."""

    def count_mark(self) -> object | None:
        """Where the server's own request count stands, or None where it cannot be read."""

    def counts_since(self, mark: object) -> Counter[str]: ...

    def cpu_seconds(self) -> float | None:
        """CPU seconds the server process has spent so far; None when it is not ours."""

    def close(self) -> None: ...


class OwnMoto:
    """A moto server on 127.0.0.1 that this bench starts, resets and restarts."""

    def __init__(
        self,
        workdir: Path,
        bucket: str,
        *,
        aws_like: bool = True,
        log_name: str = "moto-requests.log",
    ) -> None:
        self._log = workdir / log_name
        self._log.unlink(missing_ok=True)
        module = ("benchmarks.moto_server", *(("--aws-like",) if aws_like else ()))
        self._server = MotoServer(log_path=self._log, aws_like=aws_like, module=module)
        self._bucket = bucket
        self._aws_like = aws_like

    def start(self) -> OwnMoto:
        self._server.start()
        return self

    @property
    def target(self) -> Target:
        key, secret = LOCAL_CREDENTIALS
        return Target(self._server.url, self._bucket, DEFAULT_REGION, key, secret)

    @property
    def name(self) -> str:
        return "moto-aws-like" if self._aws_like else "moto"

    @property
    def description(self) -> str:
        sqs = "its SQS's cost per message made independent of the queue's depth"
        if self._aws_like:
            return (
                "moto server (local, one process; DeleteObjects' per-key ETag honoured as AWS "
                f"does; {sqs})"
            )
        return (
            "moto server (local, one process; DeleteObjects' per-key ETag ignored, as moto did "
            f"up to 5.2.5; {sqs})"
        )

    def fresh(self, prefix: str, restart: bool) -> None:
        # moto keeps the memory of big objects after a reset (1 GiB stays in its RSS), so
        # scenarios with big objects get a new server process instead.
        if restart:
            self._server.stop()
            self._server.start()
        else:
            self._server.reset()

    def count_mark(self) -> object | None:
        return self._log.stat().st_size if self._log.exists() else 0

    def counts_since(self, mark: object) -> Counter[str]:
        return count_log_lines(self._log_since(mark))

    def sqs_counts_since(self, mark: object, client: str | None = S3DRAIN_CLIENT) -> Counter[str]:
        """SQS requests by action since ``mark``: the watcher's (``client`` s3drain), or
        everyone's (None)."""
        return count_sqs_lines(self._log_since(mark), client)

    def _log_since(self, mark: object) -> str:
        assert isinstance(mark, int)
        with self._log.open("rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self._server.pid)

    def close(self) -> None:
        self._server.close()
        self._log.unlink(missing_ok=True)


class ExternalServer:
    """MinIO, real S3, ...: nothing to restart; the prefix is emptied instead."""

    def __init__(self, target: Target) -> None:
        self._target = target

    @property
    def target(self) -> Target:
        return self._target

    @property
    def name(self) -> str:
        return "external"

    @property
    def description(self) -> str:
        return f"external endpoint {self._target.endpoint_url}"

    def fresh(self, prefix: str, restart: bool) -> None:
        client = make_client(self._target)
        try:
            empty_prefix(client, self._target.bucket, prefix)
        finally:
            client.close()

    def count_mark(self) -> object | None:
        return None

    def counts_since(self, mark: object) -> Counter[str]:
        raise RuntimeError("an external endpoint has no request log here")

    def cpu_seconds(self) -> float | None:
        return None

    def close(self) -> None:
        pass


def count_log_lines(text: str) -> Counter[str]:
    """S3 operations in werkzeug request log lines, named as the proxy names them."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        match = _REQUEST_LINE.search(_ANSI.sub("", line))
        if match is None or match.group(2).startswith("/moto-api"):
            continue
        if match.group(1) == "POST" and match.group(2) == "/":
            continue  # SQS (its JSON protocol posts every action to /): count_sqs_lines
        _, bucket, key, params = split_target(match.group(2))
        counts[s3_operation(match.group(1), bucket, key, params, {})] += 1
    return counts


def count_sqs_lines(text: str, client: str | None = S3DRAIN_CLIENT) -> Counter[str]:
    """SQS actions in benchmarks.moto_server's ``sqs-request ACTION CLIENT`` lines, those of
    ``client`` only unless it is None."""
    return Counter(
        action for action, who in _SQS_LINE.findall(text) if client is None or who == client
    )


def proxyable(url: str) -> bool:
    """The proxy speaks plain HTTP only."""
    return urlsplit(url).scheme == "http"


def _with_port(url: str) -> str:
    parts = urlsplit(url)
    return url if parts.port else f"http://{parts.hostname}:80"


def routable(url: str, latency: float, link: Link | None) -> bool:
    """Both the latency proxy and the link relay need a plain HTTP endpoint."""
    return proxyable(url) or (latency == 0 and link is None)


@dataclass(frozen=True)
class RelayStats:
    """What the link relay process did during one run, by its own account."""

    cpu_seconds: float
    wall_seconds: float
    connections: int
    peak_connections: int
    bytes_down: int

    @property
    def note(self) -> str:
        share = 100 * self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0
        return (
            f"link relay: {self.cpu_seconds:.2f} CPU-s ({share:.0f} % of one core), "
            f"{self.connections:,} connections, at most {self.peak_connections:,} at once"
        )


class Route:
    """Where a contender sends its requests, and who counts them.

    Direct to our server (counted from moto's log or SeaweedFS's metrics), or through a proxy
    process (latency and/or counting), and for a wan or cloud scenario through the link relay
    in front of that.
    ``close()`` returns the counts, or None when nobody could count; ``relay_stats`` is then
    the relay's own account of the run.
    """

    def __init__(
        self, backend: Backend, latency: float, workdir: Path, link: Link | None = None
    ) -> None:
        self._backend = backend
        self._mark: object | None = None
        self._proxy: subprocess.Popen[str] | None = None
        self._relay: subprocess.Popen[str] | None = None
        self._counts_file = workdir / "proxy-counts.json"
        self._proxy_log = workdir / "proxy.log"
        self._relay_file = workdir / "relay-stats.json"
        self.relay_stats: RelayStats | None = None
        upstream = backend.target.endpoint_url
        mark = backend.count_mark()
        if not routable(upstream, latency, link):
            raise ValueError("the latency proxy and the link relay need a plain HTTP endpoint")
        if latency == 0 and mark is not None:
            self.url = upstream
            self._mark = mark
        elif proxyable(upstream):
            self.url = self._start_proxy(_with_port(upstream), latency)
        else:
            self.url = upstream  # https: direct, uncounted
        if link is not None:
            try:
                self.url = self._start_relay(_with_port(self.url), link)
            except BaseException:
                self._stop_proxy()
                raise

    def _start_proxy(self, upstream: str, latency: float) -> str:
        self._counts_file.unlink(missing_ok=True)
        self._proxy = _spawn(
            [
                *("-m", "tests.support.proxy", "--upstream", upstream),
                *("--latency", str(latency), "--counts-file", str(self._counts_file)),
            ],
            self._proxy_log,
        )
        url = _first_line(self._proxy.stdout)
        if not url.startswith("http://"):
            self._stop_proxy()
            raise RuntimeError(f"the proxy did not start; see {self._proxy_log}")
        return url

    def _start_relay(self, upstream: str, link: Link) -> str:
        self._relay_file.unlink(missing_ok=True)
        self._relay = _spawn(
            [
                *("-m", "benchmarks.wan", "--upstream", urlsplit(upstream).netloc),
                *("--delay", str(link.delay), "--rate", str(link.rate)),
                *("--stats-file", str(self._relay_file)),
            ],
            self._proxy_log,
        )
        url = _first_line(self._relay.stdout)
        if not url.startswith("http://"):
            self._stop_relay()
            raise RuntimeError(f"the link relay did not start; see {self._proxy_log}")
        return url

    def _stop_proxy(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            _stop(proxy)

    def _stop_relay(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None:
            _stop(relay)

    def close(self) -> Counter[str] | None:
        if self._relay is not None:
            self._stop_relay()
            # The relay writes its figures on SIGTERM.
            self.relay_stats = _relay_stats(self._relay_file)
        if self._mark is not None:
            return self._backend.counts_since(self._mark)
        if self._proxy is None:
            return None
        self._stop_proxy()
        # The proxy writes its counts on SIGTERM, after its last connection closed.
        data = json.loads(self._counts_file.read_text())
        return Counter({str(op): int(n) for op, n in data["counts"].items()})

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # After close() this does nothing; after a failure it stops the processes unread.
        self._stop_relay()
        self._stop_proxy()


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[str]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )


def _stop(process: subprocess.Popen[str]) -> None:
    stop_process(process, _PROXY_STOP_TIMEOUT)
    if process.stdout is not None:
        process.stdout.close()


def _relay_stats(path: Path) -> RelayStats | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return RelayStats(
        cpu_seconds=float(data["user"]) + float(data["system"]),
        wall_seconds=float(data["wall"]),
        connections=int(data["connections"]),
        peak_connections=int(data["peak_connections"]),
        bytes_down=int(data["bytes_down"]),
    )


def _first_line(stream: IO[str] | None) -> str:
    """The proxy prints its URL as soon as it listens; a dead one gives EOF, a hung one ""."""
    if stream is None:
        return ""
    ready, _, _ = select.select([stream], [], [], _PROXY_START_TIMEOUT)
    return stream.readline().strip() if ready else ""
