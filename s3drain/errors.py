"""Exit codes, the few exceptions that end a run with one of them, and any error as one line.

Every code is documented in the README; schedulers branch on them, so they never change meaning.
"""

from __future__ import annotations

from enum import IntEnum

from botocore.exceptions import BotoCoreError, ClientError


class ExitCode(IntEnum):
    OK = 0  # every object handled
    PARTIAL = 1  # some objects were left in S3 (failed, refused, conflict, changed)
    USAGE = 2  # bad flag or setting, missing bucket, rejected credentials: nothing changed
    LOCKED = 3  # another run holds the lock on this local base path
    DELETE_GUARD = 4  # --max-delete would be exceeded: nothing was deleted
    ABORTED = 5  # the run stopped early: S3 unreachable mid-run, disk full, audit log unwritable
    DENIED = 6  # `events setup`: a permission is missing (the message names it)
    INTERNAL = 70  # a bug in s3drain (EX_SOFTWARE): the traceback is in a log file it names
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


class AccessDeniedError(S3DrainError):
    """`events setup` was refused a step: the message names the permission it needs. The
    steps before it stay applied; running it again once granted finishes the rest."""

    exit_code = ExitCode.DENIED


class InternalError(S3DrainError):
    """A bug: an exception nothing expected. The run stops as it does on Ctrl-C."""

    exit_code = ExitCode.INTERNAL


class AbortError(S3DrainError):
    """The run cannot go on (disk full, S3 gone); objects not yet handled stay in S3."""

    exit_code = ExitCode.ABORTED


class TransientError(Exception):
    """A step saw something a new attempt can cure: a short body, a checksum mismatch."""


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "") or None
    return None


def http_status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def describe(exc: BaseException) -> str:
    """One line for the audit log and the terminal; never a traceback, never a secret."""
    return " ".join(_describe(exc).split())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = http_status(exc)
        code = error.get("Code") or "Error"
        message = error.get("Message") or ""
        return f"{status} {code}: {message}".strip().rstrip(":") if status else f"{code}: {message}"
    if isinstance(exc, BotoCoreError | TransientError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or type(exc).__name__}{where}"
    return f"{type(exc).__name__}: {exc}"
