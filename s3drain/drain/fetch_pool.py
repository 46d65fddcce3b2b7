"""Where objects below --multipart-threshold are fetched: in fetch processes
(`process_pool.ProcessPool`, the default where more than one core is usable) or in this
process's own threads (`InlinePool`), both by direct GETs (`direct_fetch.py`). One call is one
attempt; the caller runs it under the retry policy, so retries, the breaker and the request
count are decided in the run's process whichever pool did the work. `failure` turns what went
wrong in an attempt into the exception botocore (or the run's own code) would have raised.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any, Protocol

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)

from s3drain.drain.direct_fetch import Done, Failed, Job, PathBlocked, TempBusy, run
from s3drain.drain.verify import Interrupted, ObjectChanged
from s3drain.errors import TransientError
from s3drain.local.fs import LocalFS
from s3drain.records import ObjectRecord
from s3drain.s3.direct import Connections, Endpoint, HttpFailure, LinkFailure
from s3drain.s3.sigv4 import Credentials


class FetchProcessBug(RuntimeError):
    """A fetch process hit an error nothing expected; the traceback is its message."""


class FetchPool(Protocol):
    def fetch(self, record: ObjectRecord, temp: str) -> tuple[Done, int]:
        """One attempt: the verified, fsynced, still-open temp file, or an exception."""
        ...

    def close(self) -> None: ...


def failure(result: Failed, endpoint_url: str, operation: str = "GetObject") -> Exception:
    """The exception the rest of the run knows for what went wrong in an attempt."""
    url = endpoint_url
    kind, message = result.kind, result.message
    if kind == "http":
        answer: dict[str, Any] = {
            "Error": {"Code": result.code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": result.status},
        }
        return ClientError(answer, operation)  # type: ignore[arg-type]
    if kind == "link":
        if result.code == "connect":
            return EndpointConnectionError(endpoint_url=url)
        if result.code == "connect-timeout":
            return ConnectTimeoutError(endpoint_url=url)
        if result.code == "read-timeout":
            return ReadTimeoutError(endpoint_url=url)
        if result.code == "ssl":
            return SSLError(endpoint_url=url, error=OSError(message))
        return ConnectionClosedError(endpoint_url=url)
    simple: dict[str, Callable[[str], Exception]] = {
        "changed": ObjectChanged,
        "mismatch": TransientError,
        "busy": TempBusy,
        "blocked": PathBlocked,
        "interrupted": lambda _: Interrupted(),
    }
    if kind in simple:
        return simple[kind](message)
    if kind == "local":
        return OSError(result.errno, message, result.filename)
    return FetchProcessBug(f"in a fetch process: {message}")


def exception_for(
    exc: HttpFailure | LinkFailure, endpoint_url: str, operation: str = "GetObject"
) -> Exception:
    """A direct request's failure as botocore would have raised it."""
    if isinstance(exc, HttpFailure):
        result = Failed(0, "http", exc.message, 1, exc.status, exc.code)
    else:
        result = Failed(0, "link", exc.message, 1, code=exc.kind)
    return failure(result, endpoint_url, operation)


class InlinePool:
    """Direct GETs in the calling thread (one kept connection per thread)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        credentials: Callable[[], Credentials],
        count: Callable[[int], None],
        stop: threading.Event,
        endpoint_url: str,
    ) -> None:
        self._credentials = credentials
        self._count = count
        self._stop = stop
        self._url = endpoint_url
        self._fs = LocalFS()
        self._ids = itertools.count()
        self._conns = Connections(endpoint)
        self._closed = threading.Event()
        # On a stop, a GET still waiting for its answer ends now, not at its read timeout.
        self._watch = threading.Thread(target=self._abort_on_stop, name="s3drain-stop-watch")
        self._watch.daemon = True
        self._watch.start()

    def _abort_on_stop(self) -> None:
        while not self._closed.is_set():
            if self._stop.wait(0.5):
                self._conns.abort()
                return

    def fetch(self, record: ObjectRecord, temp: str) -> tuple[Done, int]:
        job = Job(next(self._ids), record, temp, self._credentials())
        result, fd = run(job, self._conns.mine(), self._fs, self._stop)
        self._count(result.requests)
        if isinstance(result, Done):
            assert fd is not None
            return result, fd
        raise failure(result, self._url)

    def close(self) -> None:
        self._closed.set()
        self._conns.close()
