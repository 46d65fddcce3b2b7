"""Direct requests (`s3/direct.py`) on or off for the run, and what their failures become.

A direct request is the one botocore would have sent. Where S3 answers one in a way botocore
would have handled itself (a redirect to the bucket's region, a refused signature), every
direct request of the run goes back to botocore, with one warning (`DirectSwitch`). Any other
failure is raised as the exception botocore would have raised, so `retry.py` and the callers
decide exactly as they do for botocore's own requests (`sent_directly`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from s3drain.drain.fetch_pool import exception_for
from s3drain.s3.direct import HttpFailure, LinkFailure

T = TypeVar("T")

# Answers botocore turns into a retry elsewhere (the bucket's own region) or that say the direct
# request was not the one botocore would have sent.
BOTOCORE_WOULD_HANDLE = frozenset(
    {
        "PermanentRedirect",
        "TemporaryRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
        "SignatureDoesNotMatch",
    }
)


def botocore_would_handle(status: int | None, code: str | None) -> bool:
    return status in (301, 307) or code in BOTOCORE_WOULD_HANDLE


class DirectSwitch:
    """Direct requests on, until the first answer botocore would have handled: then off for the
    rest of the run, with one warning."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self._warn = warn
        self._off = threading.Event()
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        return not self._off.is_set()

    def turn_off(self, why: str) -> None:
        with self._lock:
            if self._off.is_set():
                return
            self._off.set()
        self._warn(f"direct requests stopped ({why}); botocore sends them from now on")


def sent_directly(
    send: Callable[[], T], *, switch: DirectSwitch, url: str, operation: str
) -> T | None:
    """`send()`'s answer; None where it was one botocore would have handled (direct requests
    are off from now on: the caller sends this one through botocore)."""
    try:
        return send()
    except HttpFailure as exc:
        if botocore_would_handle(exc.status, exc.code):
            switch.turn_off(f"{exc.status} {exc.code}")
            return None
        raise exception_for(exc, url, operation) from None
    except LinkFailure as exc:
        raise exception_for(exc, url, operation) from None
