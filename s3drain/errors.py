"""Exit codes and the few exceptions that end a run with one of them.

Every code is documented in the README; schedulers branch on them, so they never change meaning.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every object handled
    PARTIAL = 1  # some objects were left in S3 (failed, refused, conflict, changed)
    USAGE = 2  # bad flag or setting, missing bucket, rejected credentials: nothing changed
    LOCKED = 3  # another run holds the lock on this local base path
    DELETE_GUARD = 4  # --max-delete would be exceeded: nothing was deleted
    ABORTED = 5  # the run stopped early: S3 unreachable mid-run, disk full, audit log unwritable
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: in-flight objects finished or were cleaned up


class S3DrainError(Exception):
    """An error that ends the run with a one-line message and a documented exit code."""

    exit_code = ExitCode.ABORTED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(S3DrainError):
    """A setting is missing or wrong, or S3 says the bucket or credentials are unusable."""

    exit_code = ExitCode.USAGE


class LockHeldError(S3DrainError):
    exit_code = ExitCode.LOCKED


class DeleteGuardError(S3DrainError):
    exit_code = ExitCode.DELETE_GUARD


class AbortError(S3DrainError):
    """The run cannot go on (disk full, S3 gone); objects not yet handled stay in S3."""

    exit_code = ExitCode.ABORTED
