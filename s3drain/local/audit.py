"""The JSON Lines audit log: one line per object, appended, never rewritten.

It answers "what did s3drain delete, and where did it go?" long after the run:

    jq -c 'select(.deleted) | {key, local_path, verified}' .s3drain/audit.jsonl
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from s3drain.records import Outcome


def audit_entry(outcome: Outcome, run_id: str, bucket: str) -> dict[str, Any]:
    r = outcome.record
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "run": run_id,
        "bucket": bucket,
        "key": r.key,
        "size": r.size,
        "etag": r.etag,
        "version_id": r.version_id,
        "last_modified": r.last_modified.isoformat(),
        "status": outcome.status.value,
        "deleted": outcome.deleted,
        "local_path": outcome.local_path,
        "verified": outcome.verified,
        "checksums": outcome.checksums,
        "delete_guard": outcome.delete_guard,
        "detail": outcome.detail or None,
    }


ROOM_MARGIN = 256 * 1024


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _drop_torn_tail(fd: int) -> None:
    """A run killed (or a disk filled) mid-line left half a line: cut the file back to its last
    complete line, so every line parses (one bad line stops `jq`) and this run's first line is
    not glued to the fragment. The fragment described a delete still in the journal."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - 64 * 1024)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)


class AuditLog:
    """Appends with O_APPEND, one write per line: a killed run never leaves half a line behind
    another line, and `tail -f` shows each object as it is decided. Opened at the first line,
    so a run stopped by a check before any object was handled leaves no file behind."""

    def __init__(self, path: Path, run_id: str, bucket: str, *, shared: bool = False) -> None:
        """`shared`: other processes append to it meanwhile (a run's lanes, `drain/lanes.py`).
        Then the run that started them has cut a torn tail already, and each line is appended
        under an exclusive flock, so the clean-up of a line cut short (a full disk) never
        takes back another process's line."""
        self.path = path
        self._run_id = run_id
        self._bucket = bucket
        self._shared = shared
        self._fd: int | None = None
        self.lines = 0

    def open_now(self) -> None:
        """Open it (cutting a killed run's torn tail) before lanes start to append."""
        if self._fd is None:
            self._fd = self._open()

    def write(self, outcome: Outcome) -> None:
        if self._fd is None:
            self._fd = self._open()
        line = json.dumps(audit_entry(outcome, self._run_id, self._bucket), ensure_ascii=False)
        self._append((line + "\n").encode("utf-8", "surrogateescape"))
        self.lines += 1

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o644)
        if self._shared:
            return fd
        try:
            _drop_torn_tail(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _append(self, data: bytes) -> None:
        assert self._fd is not None
        if not self._shared:
            self._append_alone(data)
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:
            # No flock here (some network file systems): a line is still one write, and
            # appends do not interleave; only a line cut short by a full disk could be
            # taken back with another's after it.
            self._append_alone(data)
            return
        try:
            self._append_alone(data)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _append_alone(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            # No half line left behind: take back what was written of this one. Worked out
            # only on failure, so the usual line costs no extra fstat.
            written = len(data) - len(view)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
            raise

    def has_room(self, nbytes: int) -> bool:
        """Will `nbytes` more fit? Free space on its file system, and the process's file-size
        limit (ulimit -f), each with a margin for lines other threads write meanwhile."""
        needed = nbytes + ROOM_MARGIN
        folder = self.path.parent if self.path.parent.exists() else Path(".")
        stats = os.statvfs(folder)
        if stats.f_bavail * stats.f_frsize < needed:
            return False
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft == resource.RLIM_INFINITY:
            return True
        size = os.fstat(self._fd).st_size if self._fd is not None else _size_or_zero(self.path)
        return size + needed <= soft

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None
