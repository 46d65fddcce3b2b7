"""What is worth another attempt, how the policy retries, and one-line error descriptions."""

from __future__ import annotations

import errno
import os
import random
import ssl
import threading
from collections.abc import Callable

import pytest
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

from s3drain.errors import TransientError, describe
from s3drain.s3.retry import RetryPolicy, is_retryable

ENDPOINT = "http://127.0.0.1:9000/lake/exports/a.csv"


def client_error(
    code: str, status: int | None, message: str = "message", operation: str = "GetObject"
) -> ClientError:
    response: dict[str, object] = {"Error": {"Code": code, "Message": message}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, operation)  # type: ignore[arg-type]


# --- is_retryable -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InternalError", 500),
        ("BadGateway", 502),
        ("SlowDown", 503),
        ("ServiceUnavailable", 503),
        ("GatewayTimeout", 504),
        ("502", 502),  # what botocore makes of an HTML error page from a proxy
        # the code alone is enough, whatever the status says
        ("SlowDown", None),
        ("InternalError", 200),  # S3 can report InternalError inside a 200 response
        ("RequestTimeout", 400),  # S3 sends RequestTimeout as a 400
    ],
)
def test_transient_client_errors_are_retryable(code: str, status: int | None) -> None:
    assert is_retryable(client_error(code, status)) is True


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("NoSuchKey", 404),
        ("NoSuchBucket", 404),
        ("PreconditionFailed", 412),
        ("InvalidArgument", 400),
        ("InvalidAccessKeyId", 403),
        ("SignatureDoesNotMatch", 403),
        ("InvalidRange", 416),
        ("MethodNotAllowed", 405),
    ],
)
def test_final_client_errors_are_not_retryable(code: str, status: int) -> None:
    assert is_retryable(client_error(code, status)) is False


BOTOCORE_RETRYABLE: dict[str, BaseException] = {
    "EndpointConnectionError": EndpointConnectionError(endpoint_url=ENDPOINT),
    "ConnectTimeoutError": ConnectTimeoutError(endpoint_url=ENDPOINT),
    "ConnectionClosedError": ConnectionClosedError(endpoint_url=ENDPOINT),
    "ReadTimeoutError": ReadTimeoutError(endpoint_url=ENDPOINT),
    "ResponseStreamingError": ResponseStreamingError(
        error="('Connection broken: IncompleteRead(10 bytes read, 90 more expected)')"
    ),
    "IncompleteReadError": IncompleteReadError(actual_bytes=10, expected_bytes=100),
    "FlexibleChecksumError": FlexibleChecksumError(
        error_msg="Expected checksum AAAA did not match calculated checksum BBBB"
    ),
    "ChecksumError": ChecksumError(
        checksum_type="CRC32", expected_checksum="AAAA", actual_checksum="BBBB"
    ),
    "TransientError": TransientError("the body was 10 bytes short"),
}

FINAL: dict[str, BaseException] = {
    "SSLError": SSLError(endpoint_url=ENDPOINT, error=ssl.SSLError("certificate verify failed")),
    "NoCredentialsError": NoCredentialsError(),
    "ParamValidationError": ParamValidationError(report="Invalid bucket name 'a b'"),
    "OSError(ENOSPC)": OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/raw/a.csv"),
    "PermissionError": PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/raw"),
    "ValueError": ValueError("bad"),
    "KeyError": KeyError("x"),
}


@pytest.mark.parametrize("exc", list(BOTOCORE_RETRYABLE.values()), ids=list(BOTOCORE_RETRYABLE))
def test_transient_transport_errors_are_retryable(exc: BaseException) -> None:
    assert is_retryable(exc) is True


@pytest.mark.parametrize("exc", list(FINAL.values()), ids=list(FINAL))
def test_final_errors_are_not_retryable(exc: BaseException) -> None:
    assert is_retryable(exc) is False


# --- RetryPolicy.run ----------------------------------------------------------------------------


class FailingStep:
    """Raises a fresh error from `make` for the first `failures` calls, then returns `value`."""

    def __init__(
        self, make: Callable[[int], BaseException], failures: int, value: str = "done"
    ) -> None:
        self.make = make
        self.failures = failures
        self.value = value
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            exc = self.make(self.calls)
            self.raised.append(exc)
            raise exc
        return self.value


def slow_down(attempt: int) -> BaseException:
    return client_error("SlowDown", 503, f"attempt {attempt}")


def no_such_key(attempt: int) -> BaseException:
    return client_error("NoSuchKey", 404, f"attempt {attempt}")


def test_success_first_time_does_not_sleep() -> None:
    waits: list[float] = []
    retries: list[tuple[str, BaseException, int]] = []
    policy = RetryPolicy(
        max_attempts=5, sleep=waits.append, on_retry=lambda *args: retries.append(args)
    )
    step = FailingStep(slow_down, failures=0, value="ok")
    assert policy.run("list page", step) == "ok"
    assert step.calls == 1
    assert waits == []
    assert retries == []


@pytest.mark.parametrize("failures", [1, 2, 4])
def test_transient_errors_are_retried_until_success(failures: int) -> None:
    waits: list[float] = []
    policy = RetryPolicy(max_attempts=5, sleep=waits.append)
    step = FailingStep(slow_down, failures=failures, value="body")
    assert policy.run("GET a.csv", step) == "body"
    assert step.calls == failures + 1
    assert len(waits) == failures


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 6])
def test_gives_up_after_max_attempts_and_reraises_the_last_error(max_attempts: int) -> None:
    waits: list[float] = []
    policy = RetryPolicy(max_attempts=max_attempts, sleep=waits.append)
    step = FailingStep(slow_down, failures=100)
    with pytest.raises(ClientError) as caught:
        policy.run("GET a.csv", step)
    assert step.calls == max_attempts
    assert caught.value is step.raised[-1]
    assert len(waits) == max_attempts - 1


@pytest.mark.parametrize(
    "make",
    [
        no_such_key,
        lambda _: client_error("AccessDenied", 403),
        lambda _: client_error("PreconditionFailed", 412),
        lambda _: OSError(errno.ENOSPC, "No space left on device"),
        lambda _: NoCredentialsError(),
    ],
    ids=["404", "403", "412", "ENOSPC", "no-credentials"],
)
def test_final_error_is_never_retried(make: Callable[[int], BaseException]) -> None:
    waits: list[float] = []
    retries: list[tuple[str, BaseException, int]] = []
    policy = RetryPolicy(
        max_attempts=6, sleep=waits.append, on_retry=lambda *args: retries.append(args)
    )
    step = FailingStep(make, failures=100)
    with pytest.raises(type(make(0))) as caught:
        policy.run("GET a.csv", step)
    assert step.calls == 1
    assert caught.value is step.raised[0]
    assert waits == []
    assert retries == []


def test_final_error_after_transient_ones_stops_at_once() -> None:
    errors: list[BaseException] = [
        client_error("SlowDown", 503),
        client_error("InternalError", 500),
        client_error("NoSuchKey", 404),
    ]
    policy = RetryPolicy(max_attempts=10, sleep=lambda _: None)
    step = FailingStep(lambda n: errors[n - 1], failures=3)
    with pytest.raises(ClientError) as caught:
        policy.run("GET a.csv", step)
    assert step.calls == 3
    assert caught.value is errors[2]


def test_on_retry_is_called_once_per_retry() -> None:
    retries: list[tuple[str, BaseException, int]] = []
    policy = RetryPolicy(
        max_attempts=4, sleep=lambda _: None, on_retry=lambda *args: retries.append(args)
    )
    step = FailingStep(slow_down, failures=100)
    with pytest.raises(ClientError):
        policy.run("DeleteObjects batch 3", step)
    assert [(what, attempt) for what, _exc, attempt in retries] == [
        ("DeleteObjects batch 3", 1),
        ("DeleteObjects batch 3", 2),
        ("DeleteObjects batch 3", 3),
    ]
    assert [exc for _what, exc, _attempt in retries] == step.raised[:3]


def test_on_retry_not_called_when_the_retry_succeeds_first_time() -> None:
    retries: list[tuple[str, BaseException, int]] = []
    policy = RetryPolicy(
        max_attempts=4, sleep=lambda _: None, on_retry=lambda *args: retries.append(args)
    )
    assert policy.run("x", FailingStep(slow_down, failures=1)) == "done"
    assert len(retries) == 1
    assert retries[0][2] == 1


def test_waits_grow_exponentially_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the jitter pinned to its upper bound, the backoff envelope is visible."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    waits: list[float] = []
    policy = RetryPolicy(max_attempts=8, base_seconds=0.5, cap_seconds=3.0, sleep=waits.append)
    with pytest.raises(ClientError):
        policy.run("x", FailingStep(slow_down, failures=100))
    assert waits == pytest.approx([0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0])


def test_jittered_waits_stay_within_the_envelope_and_grow_on_average() -> None:
    base, cap, attempts, runs = 0.2, 1.0, 8, 300
    by_retry: list[list[float]] = [[] for _ in range(attempts - 1)]
    for _ in range(runs):
        waits: list[float] = []
        policy = RetryPolicy(
            max_attempts=attempts, base_seconds=base, cap_seconds=cap, sleep=waits.append
        )
        with pytest.raises(ClientError):
            policy.run("x", FailingStep(slow_down, failures=100))
        assert len(waits) == attempts - 1
        for index, wait in enumerate(waits):
            assert 0 <= wait <= min(cap, base * 2**index) + 1e-9
            by_retry[index].append(wait)
    means = [sum(w) / runs for w in by_retry]
    assert means[0] < means[1] < means[2] < means[3]  # 0.1, 0.2, 0.4, 0.5 expected
    assert max(max(w) for w in by_retry) <= cap


def test_stop_event_set_before_the_retry_decision_ends_at_once() -> None:
    stop = threading.Event()
    waits: list[float] = []

    def make(attempt: int) -> BaseException:
        if attempt == 2:
            stop.set()  # Ctrl-C arrives while the second attempt is running
        return slow_down(attempt)

    policy = RetryPolicy(max_attempts=10, sleep=waits.append, stop_event=stop)
    step = FailingStep(make, failures=100)
    with pytest.raises(ClientError) as caught:
        policy.run("x", step)
    assert step.calls == 2
    assert len(waits) == 1
    assert caught.value is step.raised[-1]


def test_stop_event_set_during_the_backoff_starts_no_new_attempt() -> None:
    """Ctrl-C while waiting between attempts: the step must not be called again."""
    stop = threading.Event()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        stop.set()

    policy = RetryPolicy(max_attempts=10, sleep=sleep, stop_event=stop)
    step = FailingStep(slow_down, failures=100)
    with pytest.raises(ClientError):
        policy.run("x", step)
    assert step.calls == 1, f"the step ran {step.calls} times after the stop event was set"


def test_without_stop_event_all_attempts_run() -> None:
    policy = RetryPolicy(max_attempts=5, sleep=lambda _: None, stop_event=None)
    step = FailingStep(slow_down, failures=100)
    with pytest.raises(ClientError):
        policy.run("x", step)
    assert step.calls == 5


# --- describe -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            client_error("SlowDown", 503, "Please reduce your request rate."),
            "503 SlowDown: Please reduce your request rate.",
        ),
        (
            client_error("NoSuchKey", 404, "The specified key does not exist."),
            "404 NoSuchKey: The specified key does not exist.",
        ),
        (client_error("AccessDenied", None, "Access Denied"), "AccessDenied: Access Denied"),
        (client_error("PreconditionFailed", 412, ""), "412 PreconditionFailed"),
    ],
)
def test_describe_client_error(exc: ClientError, expected: str) -> None:
    assert describe(exc) == expected


def test_describe_client_error_with_a_multiline_message_is_one_line() -> None:
    exc = client_error("InternalError", 500, "We encountered an internal error.\nPlease retry.")
    text = describe(exc)
    assert "\n" not in text
    assert "InternalError" in text
    assert "Please retry." in text


@pytest.mark.parametrize(
    "exc",
    [*BOTOCORE_RETRYABLE.values(), *FINAL.values()],
    ids=[*BOTOCORE_RETRYABLE, *FINAL],
)
def test_describe_is_one_line(exc: BaseException) -> None:
    text = describe(exc)
    assert text.strip() != ""
    assert "\n" not in text
    assert "\r" not in text


BOTOCORE_ERRORS = {
    name: exc
    for name, exc in {**BOTOCORE_RETRYABLE, **FINAL}.items()
    if isinstance(exc, BotoCoreError)
}


@pytest.mark.parametrize("exc", list(BOTOCORE_ERRORS.values()), ids=list(BOTOCORE_ERRORS))
def test_describe_botocore_error_names_its_kind(exc: BaseException) -> None:
    assert describe(exc).startswith(type(exc).__name__)


def test_describe_endpoint_error_keeps_the_endpoint() -> None:
    assert ENDPOINT in describe(EndpointConnectionError(endpoint_url=ENDPOINT))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/raw/a.csv"),
            f"{os.strerror(errno.ENOSPC)} (/data/raw/a.csv)",
        ),
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), os.strerror(errno.ENOSPC)),
        (
            PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/raw"),
            f"{os.strerror(errno.EACCES)} (/data/raw)",
        ),
    ],
)
def test_describe_os_error(exc: OSError, expected: str) -> None:
    assert describe(exc) == expected
