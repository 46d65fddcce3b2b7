"""What every command's front end shares: the one-line error, the stop on Ctrl-C/SIGTERM, and
the check that a metrics file can be written before anything runs."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from s3drain.errors import ConfigError, ExitCode, S3DrainError
from s3drain.output import mask


def report_error(err: TextIO, error: S3DrainError, secrets: Sequence[str] = ()) -> None:
    err.write(mask(f"s3drain: error: {error.message}\n", secrets))
    if error.hint:
        err.write(mask(f"s3drain: hint: {error.hint}\n", secrets))
    err.flush()


class Stopper:
    """First Ctrl-C/SIGTERM: stop taking objects, finish the ones in flight, write the summary.
    Second: leave at once (temp files are swept by the next run, nothing is half-deleted)."""

    def __init__(self, err: TextIO) -> None:
        self.event = threading.Event()
        self._err = err

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            os._exit(int(ExitCode.INTERRUPTED))
        self.event.set()
        self._err.write(
            "\ns3drain: stopping: finishing objects in flight (again to quit at once)\n"
        )
        self._err.flush()

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self)
            signal.signal(signal.SIGTERM, self)


def check_writable(path: Path | None, *, dry_run: bool) -> None:
    """A typo in --metrics-file is a usage error before the run, not a warning after it."""
    if path is None or dry_run:
        return
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write the metrics file {path}: {folder} is not a writable folder",
            hint="check --metrics-file / S3DRAIN_METRICS_FILE",
        )
