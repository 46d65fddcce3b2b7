"""The progress line on a terminal: objects, bytes, rates, objects left in S3, ETA.

Redrawn every half second by its own thread; whoever writes a whole line to the same terminal
clears it first (`clear`), so lines and the progress line never mix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from s3drain.units import format_duration, format_size

REDRAW_SECONDS = 0.5


@dataclass(frozen=True)
class Progress:
    """The figures of one redraw."""

    done: int  # objects with an outcome, filtered ones and ones waiting for their delete
    downloaded: int  # bytes
    left_in_s3: int
    elapsed: float  # seconds
    listed: int
    listing_done: bool
    expected: int | None  # --max-objects: an ETA before the listing ends


def progress_text(p: Progress) -> str:
    elapsed = max(p.elapsed, 1e-6)
    rate = p.done / elapsed
    text = (
        f"{p.done:,} objects  {format_size(p.downloaded)}  {rate:,.0f} obj/s  "
        f"{format_size(p.downloaded / elapsed)}/s  left in S3 {p.left_in_s3:,}"
    )
    if p.listing_done:
        total = p.listed
    elif p.expected is not None:
        total = p.expected
    else:
        return f"{text}  (listed {p.listed:,} so far)"
    remaining = max(total - p.done, 0)
    eta = format_duration(remaining / rate) if rate > 0 else "?"
    return f"{text}  ETA {eta}"


class ProgressLine:
    """The line's thread. `snapshot` is called under `lock`, which the writer of other lines
    holds too."""

    def __init__(
        self,
        err: TextIO,
        lock: threading.RLock,
        snapshot: Callable[[], Progress],
        crashed: Callable[[BaseException, str], None],
    ) -> None:
        self._err = err
        self._lock = lock
        self._snapshot = snapshot
        self._crashed = crashed
        self._visible = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="s3drain-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def clear(self) -> None:
        """Called with `lock` held, before another line is written to the terminal."""
        if self._visible:
            self._err.write("\r\x1b[K")
            self._err.flush()
            self._visible = False

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            self.clear()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(REDRAW_SECONDS):
                with self._lock:
                    self._err.write("\r\x1b[K" + progress_text(self._snapshot()))
                    self._err.flush()
                    self._visible = True
        except Exception as exc:
            self._crashed(exc, "the progress line")


class ProgressRelay:
    """A lane's figures, handed every half second to the run that draws the line (`lanes.py`)
    instead of drawn here: a lane has no terminal of its own."""

    def __init__(
        self,
        lock: threading.RLock,
        snapshot: Callable[[], Progress],
        sink: Callable[[Progress], None],
        crashed: Callable[[BaseException, str], None],
    ) -> None:
        self._lock = lock
        self._snapshot = snapshot
        self._sink = sink
        self._crashed = crashed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="s3drain-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def clear(self) -> None:
        """Nothing drawn here, nothing to clear."""

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(REDRAW_SECONDS):
                with self._lock:
                    figures = self._snapshot()
                self._sink(figures)
        except Exception as exc:
            self._crashed(exc, "the progress relay")
