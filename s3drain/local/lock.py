"""One run per local base path: an advisory lock the kernel drops when the process dies, so a
kill -9 never leaves a stale lock to clean by hand."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from s3drain.errors import LockHeldError


@contextmanager
def run_lock(state_dir: Path, base: Path) -> Iterator[None]:
    path = state_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise LockHeldError(
                f"another s3drain run (pid {holder}) is using {base}; this run changed nothing",
                hint="wait for it to finish, or give this run another --local-base-path",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the flock
