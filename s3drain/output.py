"""Text helpers both commands use for what they print: plurals, keys made safe for a terminal,
secrets masked, JSON."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, TextIO


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def printable(text: str) -> str:
    """A key as it may be shown on a terminal: control characters, line breaks and the like
    escaped (`\\x1b`, `\\n`), so a hostile key cannot move the cursor or fake a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    return text


def dumps_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=False)


class SafeStream(io.TextIOBase):
    """stdout or stderr that cannot kill or falsify a run: once a write fails (a closed pipe
    from `s3drain ... | head`, a full disk under a log file) the stream is dropped and every
    later write is a no-op. The audit log and the exit code still tell what happened."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self.broken: str | None = None

    def write(self, text: str) -> int:
        if self.broken is None:
            try:
                self._stream.write(text)
            except (OSError, ValueError) as exc:
                self._drop(exc)
        return len(text)

    def flush(self) -> None:
        if self.broken is None:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._drop(exc)

    def _drop(self, exc: BaseException) -> None:
        self.broken = str(exc) or type(exc).__name__
        # What is still buffered would fail again when the interpreter flushes at exit, and
        # turn the exit code into 120: point the file descriptor at /dev/null instead.
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)

    def isatty(self) -> bool:
        try:
            return self.broken is None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def writable(self) -> bool:
        return True
