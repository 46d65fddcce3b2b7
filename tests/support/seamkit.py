"""The seams of s3drain where the world (or a bug) can get in, wired to one switchable fault,
for the in-process chaos of `seamtrial.py`:

    fs.<method>     every `LocalFS` method the pipeline calls (`SeamFS`, passed as `fs=`)
    audit.append    `AuditLog._append`: one audit line to disk
    audit.sync      `AuditLog.sync`: the fsync after a batch of lines
    ledger.write    `Ledger._write`: one durable SQLite transaction (raised inside it, so it
                    rolls back, or after its commit)
    err             the stream the run writes its lines to (`SeamStream`)
    deleter.flush   `Deleter._flush`: one delete batch, end to end
    listing         one ListObjectsV2 request (pages of PAGE_SIZE keys while installed)
    fetch.stream    `drain.fetch._stream`: one GET stream, whole or ranged

What is raised depends on the seam: OSError ENOSPC/EIO (EPIPE for a stream), SQLite's own
"disk full" and "disk I/O" errors inside a transaction, S3's 500 and an unreachable endpoint for
a request, and a plain RuntimeError for "a bug". A `Fault` fires at the k-th call of its seam,
once or from then on (a disk that stays full); `activate` makes it the one the seams consult.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import EndpointConnectionError

import s3drain.drain.fetch
import s3drain.drain.source
from s3drain.drain.deleter import Deleter
from s3drain.local.audit import AuditLog
from s3drain.local.fs import LocalFS
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_db import translate
from s3drain.s3.listing import list_pages
from tests.support.drainkit import Answer, Call, error_response

PAGE_SIZE = 8  # keys per listing page while installed, so a fault can land between pages

FS_METHODS = (
    "makedirs",
    "create_temp",
    "remove_if_unlocked",
    "pwrite",
    "allocate",
    "fsync",
    "close",
    "link_into_place",
    "fsync_dir",
    "file_id",
    "fsync_file",
    "remove",
)
# LocalFS methods a drain never calls (write, truncate), or only in cases a small random
# bucket does not produce (pread: an MD5 read back after a split, which botocore's CRC32 on
# every upload rules out; same_bytes: a local file no checksum can prove) are left out: a seam
# in this list that a trial's undisturbed run does not reach fails `test_every_seam_is_reached`.
SEAMS: tuple[str, ...] = (
    *(f"fs.{name}" for name in FS_METHODS),
    "audit.append",
    "audit.sync",
    "ledger.write",
    "err",
    "deleter.flush",
    "listing",
    "fetch.stream",
)
OS_KINDS = ("enospc", "eio", "bug")
KINDS: Mapping[str, tuple[str, ...]] = {
    **{f"fs.{name}": OS_KINDS for name in FS_METHODS},
    "audit.append": OS_KINDS,
    "audit.sync": OS_KINDS,
    "ledger.write": ("sqlite-full", "sqlite-io", "bug"),
    "err": ("epipe", "enospc", "eio"),
    # Anything escaping a delete batch is unexpected, an OSError as much as a RuntimeError.
    "deleter.flush": ("bug", "eio"),
    "listing": ("s3-500", "s3-down", "bug"),
    "fetch.stream": OS_KINDS,
}
# Where a fault may also strike after the real call did its work: a close or a link that
# happened although it reported an error, a commit whose caller saw one.
AFTER_ALLOWED = frozenset({"fs.close", "fs.link_into_place", "fs.fsync", "ledger.write"})
ALWAYS_AFTER = frozenset({"fs.close"})  # close(2) releases the descriptor even when it fails
UNEXPECTED = frozenset({"bug"})


def make_error(kind: str, seam: str) -> BaseException:
    where = f"injected at {seam}"
    if kind == "enospc":
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), where)
    if kind == "eio":
        return OSError(errno.EIO, os.strerror(errno.EIO), where)
    if kind == "epipe":
        return BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
    if kind == "sqlite-full":
        return sqlite3.OperationalError("database or disk is full")
    if kind == "sqlite-io":
        return sqlite3.OperationalError("disk I/O error")
    if kind == "s3-500":  # answered by the listing rule as S3 would: an error response
        return RuntimeError(f"S3 500 InternalError, {where}")
    if kind == "s3-down":
        return EndpointConnectionError(endpoint_url=f"http://{where.replace(' ', '-')}")
    if kind == "bug":
        return RuntimeError(f"a bug, {where}")
    raise ValueError(kind)


@dataclass
class Fault:
    """One trial's fault: `seam` raises `kind` at its `at`-th call (and every call after, when
    `persistent`). With an empty `seam` it only counts calls (calibration)."""

    seam: str = ""
    at: int = 0
    kind: str = "bug"
    persistent: bool = False
    after: bool = False
    calls: Counter[str] = field(default_factory=Counter)
    fired: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, seam: str) -> BaseException | None:
        with self.lock:
            self.calls[seam] += 1
            if seam != self.seam or self.calls[seam] < self.at:
                return None
            if self.fired and not self.persistent:
                return None
            self.fired += 1
        return make_error(self.kind, seam)

    @property
    def strikes_after(self) -> bool:
        return self.seam in ALWAYS_AFTER or (self.after and self.seam in AFTER_ALLOWED)

    @property
    def unexpected(self) -> bool:
        """Did something fire that only a bug could raise (so the run must end with 70)?"""
        return self.fired > 0 and (self.kind in UNEXPECTED or self.seam == "deleter.flush")


_active: Fault | None = None


@contextlib.contextmanager
def activate(fault: Fault) -> Iterator[Fault]:
    """The fault every seam consults while the context lasts (one at a time)."""
    global _active  # noqa: PLW0603
    _active = fault
    try:
        yield fault
    finally:
        _active = None


def _hit(seam: str) -> BaseException | None:
    fault = _active
    return None if fault is None else fault.hit(seam)


def _strikes_after() -> bool:
    fault = _active
    return fault is not None and fault.strikes_after


# -- the seams ------------------------------------------------------------------------------


class SeamFS(LocalFS):
    """LocalFS whose every method in FS_METHODS goes through the trial's fault first."""


def _fs_method(name: str) -> Callable[..., Any]:
    real = getattr(LocalFS, name)

    @functools.wraps(real)
    def method(self: LocalFS, *args: Any, **kwargs: Any) -> Any:
        error = _hit(f"fs.{name}")
        if error is None:
            return real(self, *args, **kwargs)
        if _strikes_after():
            real(self, *args, **kwargs)
        raise error

    return method


for _name in FS_METHODS:
    setattr(SeamFS, _name, _fs_method(_name))


class SeamStream(io.StringIO):
    """The run's stderr: raises at the trial's call of write or flush."""

    def write(self, text: str) -> int:
        error = _hit("err")
        if error is not None:
            raise error
        return super().write(text)

    def flush(self) -> None:
        error = _hit("err")
        if error is not None:
            raise error
        super().flush()


def _wrap_plain(seam: str, real: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(real)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        error = _hit(seam)
        if error is None:
            return real(*args, **kwargs)
        if _strikes_after():
            real(*args, **kwargs)
        raise error

    return wrapper


def _wrap_ledger_write(real: Callable[..., Any]) -> Callable[..., Any]:
    def write(self: Ledger, doing: str, work: Callable[[sqlite3.Connection], Any]) -> Any:
        error = _hit("ledger.write")
        if error is None:
            return real(self, doing, work)
        if _strikes_after():
            real(self, doing, work)
            if isinstance(error, sqlite3.Error):
                raise translate(error, self.path, doing)
            raise error

        def failing(conn: sqlite3.Connection) -> Any:
            work(conn)
            raise error  # inside the transaction: it is rolled back

        return real(self, doing, failing)

    return write


def listing_rule(operation: str, call: Call) -> Answer | BaseException | None:
    """For `drainkit.inject` on the run's client: ListObjectsV2 goes through the fault."""
    if operation != "ListObjectsV2":
        return None
    error = _hit("listing")
    if error is None:
        return None
    fault = _active
    if fault is not None and fault.kind == "s3-500":
        return error_response(500, "InternalError", "injected at listing")
    return error


@contextlib.contextmanager
def seams_installed() -> Iterator[None]:
    """Every seam but the file system's (a SeamFS per run) and the stream's (a SeamStream per
    run) wired to the active fault, for as long as the context lasts."""
    saved: list[tuple[object, str, object]] = []

    def swap(owner: object, name: str, value: object) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    try:
        swap(AuditLog, "_append", _wrap_plain("audit.append", AuditLog._append))
        swap(AuditLog, "sync", _wrap_plain("audit.sync", AuditLog.sync))
        swap(Ledger, "_write", _wrap_ledger_write(Ledger._write))
        swap(Deleter, "_flush", _wrap_plain("deleter.flush", Deleter._flush))
        swap(
            s3drain.drain.fetch, "_stream", _wrap_plain("fetch.stream", s3drain.drain.fetch._stream)
        )
        swap(
            s3drain.drain.source,
            "list_pages",
            functools.partial(list_pages, page_size=PAGE_SIZE),
        )
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
