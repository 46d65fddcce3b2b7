"""A lane: `python -m s3drain.cli.lane PARENT_PID`, started by `drain/lanes.py`.

It reads its `LaneJob` from stdin and runs the whole drain pipeline over its share of the keys
(`run_drain` with a `LaneRole`), on a core of its own where the run keeps to cores. Its output
lines, progress figures and final figures go to the run over stdout. It stops as on Ctrl-C at
SIGTERM (the run's word) and when its stdin ends (the run is gone), and the kernel kills it
when the run dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import signal
import sys
import threading
from typing import TextIO, cast

from s3drain.collector import tune_collector
from s3drain.drain.lane_wire import Channel, LaneEnd, LaneJob, Line, receive
from s3drain.drain.run import run_drain
from s3drain.drain.settings import usable_core_set

_PR_SET_PDEATHSIG = 1


class _Lines(io.TextIOBase):
    """A text stream whose whole lines go to the run, which writes them where it writes its
    own (clearing the progress line first)."""

    def __init__(self, channel: Channel, stream: str) -> None:
        self._channel = channel
        self._stream = stream
        self._buffer = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._channel.send(Line(self._stream, line))
        return len(text)

    def isatty(self) -> bool:
        return False


def _die_with(parent: int) -> None:
    """The kernel kills this process when the run's process ends, however it ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the end of stdin still stops it
    if os.getppid() != parent:
        os._exit(1)  # the run ended before the request took effect


def _keep_to_one_core(index: int) -> None:
    cores = sorted(usable_core_set())
    # Where cores cannot be chosen, the lane runs where the system puts it.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cores[index % len(cores)]})


def main(argv: list[str]) -> int:
    tune_collector()
    _die_with(int(argv[1]))
    job = receive(sys.stdin.buffer)
    if not isinstance(job, LaneJob):
        return 1
    channel = Channel(sys.stdout.buffer)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_run() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        stop.set()  # the run has gone (or let go of this lane)

    threading.Thread(target=watch_run, name="s3drain-lane-watch", daemon=True).start()
    if job.settings.pin:
        _keep_to_one_core(job.role.index)
    result = run_drain(
        job.settings,
        out=cast(TextIO, _Lines(channel, "out")),
        err=cast(TextIO, _Lines(channel, "err")),
        stop=stop,
        on_overrun=lambda code: os._exit(int(code)),
        own_process=True,
        lane=job.role,
        progress_to=channel.send,
    )
    channel.send(
        LaneEnd(
            exit_code=result.exit_code,
            totals=result.totals,
            requests=dict(result.info.requests),
            error=result.info.error,
            hint=result.hint,
        )
    )
    # Everything the run holds is closed; the thread that watches stdin is still reading it,
    # and an interpreter shutting down under it aborts. Nothing is left to finalize.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
