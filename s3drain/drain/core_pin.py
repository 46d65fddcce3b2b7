"""Which cores a run's threads may use: one, while the objects it fetches are small; every
allowed core while they are not.

Why: with small objects a run's threads take turns on Python's interpreter lock thousands of
times a second. Spread over two cores, each turn wakes a thread on the other core. On 2 cores,
2,000 x 4 KiB from SeaweedFS: 1.73 s and 1.21 CPU-s spread, 1.48 s and 0.96 CPU-s on one core
(medians of 5; `perf stat`: 5,500-7,900 CPU migrations against 1-2). Larger objects go the
other way, since their copies run in the kernel, outside the lock, side by side: 200 x 256 KiB
ran as fast either way, 200 x 1 MiB took 1.11 s on one core against 0.91 s spread, 60 x 8 MiB
1.83 s against 1.41 s. So the run is on one core only while the mean size of the objects it
started in the last `interval` is below PIN_BELOW, and the choice is made again every
interval.

Which core: the one other processes use least, judged from /proc/stat, with the run's own CPU
time taken out of its own core's; it moves only when another core is freer by MOVE_MARGIN of a
core, so two runs, or a run and a server, do not chase each other around.

Only for a process that is s3drain's own (the command line): a host application's threads are
its own business, as its collector is (`collector.py`).
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

PIN_BELOW = 256 * 1024  # mean object size, bytes
MOVE_MARGIN = 0.25  # of one core's time
INTERVAL = 0.5  # seconds

# Core -> (busy, total) in clock ticks since boot.
CoreTimes = Mapping[int, tuple[int, int]]


def read_core_times(path: str = "/proc/stat") -> dict[int, tuple[int, int]]:
    """Each core's busy and total ticks (iowait counts as idle)."""
    times: dict[int, tuple[int, int]] = {}
    with open(path, encoding="ascii") as stat:
        for line in stat:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or not name[3:].isdigit():
                continue
            ticks = [int(field) for field in rest.split()]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            total = sum(ticks[:8])
            times[int(name[3:])] = (total - idle, total)
    return times


@dataclass(frozen=True)
class Sample:
    cores: CoreTimes
    own_seconds: float  # this process's CPU time, user and system


def others_load(before: Sample, after: Sample, core: int | None, tick: float) -> dict[int, float]:
    """How busy each core was with anything but this run, as a share of the interval. Where
    the run is pinned (`core`), its own CPU time is taken out of that core's."""
    loads: dict[int, float] = {}
    own = after.own_seconds - before.own_seconds
    for cpu, (busy, total) in after.cores.items():
        if cpu not in before.cores:
            continue
        busy0, total0 = before.cores[cpu]
        span = total - total0
        if span <= 0:
            continue
        busy_seconds = (busy - busy0) * tick
        if cpu == core:
            busy_seconds = max(0.0, busy_seconds - own)
        loads[cpu] = min(1.0, busy_seconds / (span * tick))
    return loads


def choose(loads: Mapping[int, float], allowed: frozenset[int], current: int | None) -> int:
    """The allowed core others use least: the current one unless another is freer by the
    margin. Unpinned, the run's own CPU time cannot be told apart from others' (it ran
    everywhere), so a first choice counts it as theirs."""
    candidates = {cpu: load for cpu, load in loads.items() if cpu in allowed}
    if not candidates:
        return current if current is not None else max(allowed)
    least = min(candidates.values())
    if current is not None and candidates.get(current, 1.0) - least < MOVE_MARGIN:
        return current
    # Among the freest, the highest-numbered: core 0 is where a host's interrupts and its
    # pinned services usually are.
    return max(cpu for cpu, load in candidates.items() if load - least < MOVE_MARGIN)


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


def sample_now() -> Sample:
    return Sample(read_core_times(), _own_seconds())


def set_all_threads(cores: frozenset[int]) -> None:
    """Every thread of this process (a thread started later takes its creator's cores)."""
    for name in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(name), cores)
        except OSError:
            continue  # the thread ended meanwhile, or the kernel refuses: it stays as it was


class CorePin:
    """Told the size of each object the run starts (`started`); keeps the run's threads on
    one core while those are small. `close()` gives every allowed core back."""

    def __init__(
        self,
        allowed: frozenset[int],
        *,
        debug: Callable[[str], None] = lambda _: None,
        crashed: Callable[[BaseException, str], None] | None = None,
        interval: float = INTERVAL,
        sample: Callable[[], Sample] = sample_now,
        apply: Callable[[frozenset[int]], None] = set_all_threads,
        tick: float | None = None,
    ) -> None:
        self._allowed = allowed
        self._debug = debug
        self._crashed = crashed
        self._interval = interval
        self._sample = sample
        self._apply = apply
        self._tick = tick if tick is not None else 1.0 / os.sysconf("SC_CLK_TCK")
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        # Since the last choice. Updated without a lock, by many threads: a lost count now and
        # then only blurs a mean that is a rough signal anyway.
        self._objects = 0
        self._bytes = 0
        self.core: int | None = None  # None: every allowed core
        self.moves = 0
        self._last: Sample | None
        try:
            self._last = sample()
        except OSError:
            self._last = None  # no /proc/stat: the run is never pinned

    def started(self, size: int) -> None:
        self._objects += 1
        self._bytes += size
        if self._thread is None and self._last is not None:
            self._start()

    def close(self) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._done.set()
            self._spread()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._done.is_set():
                return
            self._thread = threading.Thread(target=self._watch, name="s3drain-core", daemon=True)
            self._choose()
            self._thread.start()

    def _watch(self) -> None:
        # Each interval a little longer or shorter: two runs started together (--shard) do
        # not weigh the same moment and move onto the same free core at once.
        jitter = random.Random()
        try:
            while not self._done.wait(self._interval * jitter.uniform(0.8, 1.2)):
                with self._lock:
                    if self._done.is_set():
                        return
                    self._choose()
        except Exception as exc:
            # A bug, as in any of the run's threads: the run ends with exit 70 (on every core).
            with self._lock:
                self._done.set()
                self._spread()
            if self._crashed is None:
                raise
            self._crashed(exc, "choosing the run's core")

    def _choose(self) -> None:
        """With the lock held: one core or all of them, from what the run started since the
        last choice."""
        objects, size = self._objects, self._bytes
        if objects == 0:
            return  # nothing started (a watcher waiting for events): nothing to weigh, as before
        self._objects = self._bytes = 0
        try:
            now = self._sample()
        except OSError:
            return
        assert self._last is not None
        loads = others_load(self._last, now, self.core, self._tick)
        self._last = now
        small = size / objects < PIN_BELOW
        if not small:
            if self._spread():
                self._debug("threads on every core: the objects are large")
            return
        core = choose(loads, self._allowed, self.core)
        if core != self.core:
            if self.core is not None:
                self.moves += 1
            shares = ", ".join(f"core {cpu} {load:.0%}" for cpu, load in sorted(loads.items()))
            self._debug(f"threads on core {core}: the objects are small (others' load: {shares})")
            self.core = core
        # Every time, not only on a move: a thread started since by one not yet moved would
        # otherwise be left out.
        self._apply(frozenset({core}))

    def _spread(self) -> bool:
        """With the lock held: every allowed core again, if the run was on one (True)."""
        if self.core is None:
            return False
        self._apply(self._allowed)
        self.core = None
        return True
