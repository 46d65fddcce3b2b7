"""Where retries are decided: what is worth another attempt, how long to wait, when to stop.

Every S3 step (a list page, a GET *including its body read*, a delete batch) runs under
`RetryPolicy.run`. Transient: throttling (503 SlowDown), 500/502/504, connection resets, read
timeouts, a body cut short, a checksum that did not match. Final: 403/404/412, bad input, local
file-system errors. One classification, used by every stage and by the error messages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from botocore.exceptions import (
    ChecksumError,
    ClientError,
    ConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    SSLError,
)
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_random_exponential,
)

from s3drain.errors import TransientError, error_code, http_status

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "BadDigest",  # the bytes were damaged on the way in: a new attempt sends them again
    }
)


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, ClientError):
        return http_status(exc) in RETRYABLE_STATUS or error_code(exc) in RETRYABLE_CODES
    if isinstance(exc, SSLError):
        return False  # a certificate problem does not heal in a second
    return isinstance(
        exc,
        ConnectionError
        | HTTPClientError
        | IncompleteReadError
        | ChecksumError
        | FlexibleChecksumError,
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, `max_attempts` tries in all.

    With a `stop_event` (Ctrl-C), a backoff ends the moment it is set and no further attempt
    starts: the last error is raised. Tests pass a no-op `sleep`.
    """

    max_attempts: int = 6
    base_seconds: float = 0.2
    cap_seconds: float = 20.0
    sleep: Callable[[float], None] | None = None  # None: really wait (interruptibly)
    on_retry: Callable[[str, BaseException, int], None] | None = None
    stop_event: threading.Event | None = None

    def pause(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        elif self.stop_event is not None:
            self.stop_event.wait(seconds)
        else:
            time.sleep(seconds)

    def run(self, what: str, step: Callable[[], T]) -> T:
        stop = stop_after_attempt(self.max_attempts)
        event = self.stop_event
        if event is not None:
            stop = stop | stop_when_event_set(event)  # type: ignore[assignment]
        last_error: list[BaseException] = []

        def attempt() -> T:
            if last_error and event is not None and event.is_set():
                raise last_error[0]  # stopped during the backoff: no new attempt
            try:
                return step()
            except BaseException as exc:
                last_error[:] = [exc]
                raise

        retrying = Retrying(
            stop=stop,
            wait=wait_random_exponential(multiplier=self.base_seconds, max=self.cap_seconds),
            retry=retry_if_exception(is_retryable),
            sleep=self.pause,
            before_sleep=self._before_sleep(what),
            reraise=True,
        )
        return retrying(attempt)

    def _before_sleep(self, what: str) -> Callable[[RetryCallState], None] | None:
        on_retry = self.on_retry
        if on_retry is None:
            return None

        def report(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            if exc is not None:
                on_retry(what, exc, state.attempt_number)

        return report
