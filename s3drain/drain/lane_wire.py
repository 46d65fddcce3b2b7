"""What a lane and the run that started it say to each other, over the lane's stdin and stdout.

Frames of a 4-byte length and a pickle: both ends are this same s3drain, started from the same
interpreter, so nothing foreign is ever unpickled. The run sends one `LaneJob`; the lane sends
its output lines, its progress figures every half second, and at the end its `LaneEnd`.
"""

from __future__ import annotations

import pickle
import struct
import threading
from dataclasses import dataclass
from typing import IO

from s3drain.drain.guard import GuardChoice
from s3drain.drain.settings import DrainSettings
from s3drain.drain.summary import Totals
from s3drain.errors import ExitCode

_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class LaneRole:
    """This run is lane `index` of `count`, started by a run that holds the lock, asked S3
    whether the bucket is versioned, chose the delete guard and finished what a killed run
    left. The lane does none of that again."""

    index: int
    count: int
    run_id: str
    versioned: bool
    guard: GuardChoice | None


@dataclass(frozen=True)
class LaneJob:
    settings: DrainSettings
    role: LaneRole


@dataclass(frozen=True)
class Line:
    stream: str  # "out" or "err"
    text: str


@dataclass(frozen=True)
class LaneEnd:
    exit_code: ExitCode
    totals: Totals
    requests: dict[str, int]
    error: str | None  # the lane's own fatal error, as it would have ended a run
    hint: str | None


class Channel:
    """One end's writer: whole frames, from any thread."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: object) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._stream.write(_LENGTH.pack(len(data)) + data)
            self._stream.flush()


def receive(stream: IO[bytes]) -> object | None:
    """The next frame, or None at the end of the stream (or a frame cut short)."""
    head = _read_exactly(stream, _LENGTH.size)
    if head is None:
        return None
    body = _read_exactly(stream, _LENGTH.unpack(head)[0])
    if body is None:
        return None
    message: object = pickle.loads(body)  # noqa: S301 - our own frames, from our own process
    return message


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
