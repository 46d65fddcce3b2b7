"""Where retries are decided: what is worth another attempt, how long to wait, when to stop.

Every S3 step (a list page, a GET *including its body read*, a delete batch) runs under
`RetryPolicy.run`. Transient: throttling (503 SlowDown), 500/502/504, connection resets, read
timeouts, a body cut short, a checksum that did not match. Final: 403/404/412, bad input, local
file-system errors. One classification, used by every stage and by the error messages.
"""

from __future__ import annotations

import random
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
)
from tenacity.stop import stop_base

from s3drain.errors import TransientError, error_code, http_status
from s3drain.s3.breaker import Breaker, is_connection_failure

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


class _StopWhen(stop_base):
    """Stop retrying once `condition()` holds (Ctrl-C, a halt, a tripped breaker)."""

    def __init__(self, condition: Callable[[], bool]) -> None:
        self._condition = condition

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._condition()


# With a breaker, a connection failure waits at least this long, doubling: six attempts span
# well over the few seconds a blip lasts, and the breaker ends the wait for a real outage.
OUTAGE_BASE_SECONDS = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, `max_attempts` tries in all.

    With a `stop_event` (Ctrl-C), a backoff ends the moment it is set and no further attempt
    starts: the last error is raised. With a `breaker`, every answer and every connection
    failure is reported to it, connection failures wait long enough to ride out a blip, and
    once it has tripped no further attempt starts. Tests pass a no-op `sleep`.
    """

    max_attempts: int = 6
    base_seconds: float = 0.2
    cap_seconds: float = 20.0
    sleep: Callable[[float], None] | None = None  # None: really wait (interruptibly)
    on_retry: Callable[[str, BaseException, int], None] | None = None
    stop_event: threading.Event | None = None
    breaker: Breaker | None = None

    def pause(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        elif self.stop_event is not None:
            self.stop_event.wait(seconds)
        elif self.breaker is not None:
            self.breaker.event.wait(seconds)
        else:
            time.sleep(seconds)

    def stopped(self) -> bool:
        """Ctrl-C (where this policy heeds it) or a tripped breaker: no new attempt starts."""
        if self.stop_event is not None and self.stop_event.is_set():
            return True
        return self.breaker is not None and self.breaker.tripped is not None

    def run(self, what: str, step: Callable[[], T]) -> T:
        breaker = self.breaker
        last_error: list[BaseException] = []

        def attempt() -> T:
            if last_error and self.stopped():
                raise last_error[0]  # stopped during the backoff: no new attempt
            try:
                result = step()
            except ClientError as exc:
                if breaker is not None:
                    breaker.answered()  # an error from S3 is still an answer
                last_error[:] = [exc]
                raise
            except BaseException as exc:
                if breaker is not None:
                    breaker.failed(exc)
                last_error[:] = [exc]
                raise
            if breaker is not None:
                breaker.answered()
            return result

        # The first attempt runs without tenacity's machinery, which costs more CPU than a
        # small object's GET; only a retryable failure builds the policy, and tenacity then
        # sees that failure as its own first attempt.
        try:
            return attempt()
        except BaseException as exc:
            if not is_retryable(exc) or self.max_attempts <= 1:
                raise
            first = [exc]

        def replay_then_attempt() -> T:
            if first:
                raise first.pop()
            return attempt()

        stop = stop_after_attempt(self.max_attempts) | _StopWhen(self.stopped)
        retrying = Retrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            sleep=self.pause,
            before_sleep=self._before_sleep(what),
            reraise=True,
        )
        return retrying(replay_then_attempt)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if self.breaker is not None and exc is not None and is_connection_failure(exc):
            ceiling = min(self.cap_seconds, OUTAGE_BASE_SECONDS * 2 ** (state.attempt_number - 1))
            return OUTAGE_BASE_SECONDS + random.uniform(0, ceiling)
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (state.attempt_number - 1))
        return random.uniform(0, ceiling)

    def _before_sleep(self, what: str) -> Callable[[RetryCallState], None] | None:
        on_retry = self.on_retry
        if on_retry is None:
            return None

        def report(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            if exc is not None:
                on_retry(what, exc, state.attempt_number)

        return report
