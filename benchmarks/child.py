"""Run one contender as a child process and measure it: wall time, CPU, peak RSS.

The contender is started by ``launch.py``, a bare interpreter that forks it, ``os.wait4``s it
and writes that one child's rusage (including any child it waited for, such as a launcher's
real binary), and the peaks of its process tree's memory that it sampled from /proc. Two
traps avoided: ``RUSAGE_CHILDREN`` of the runner sums every child it ever had and reports the
largest peak RSS among them; and a child forked straight from the runner inherits the
runner's RSS as its peak (see launch.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_KIB = 1024
LAUNCHER = Path(__file__).resolve().parent / "launch.py"


@dataclass(frozen=True)
class ChildResult:
    exit_code: int
    wall_seconds: float
    cpu_seconds: float  # user + system
    peak_rss_bytes: int  # the largest peak of any one process of the tree
    timed_out: bool
    # The largest sum over the tree's processes at one moment (Pss), and how many processes
    # the launcher saw (see launch.py).
    peak_rss_sum_bytes: int = 0
    processes: int = 1


class LauncherError(RuntimeError):
    """The launcher wrote no figures (it was killed, or could not start)."""


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdout: Path,
    stderr: Path,
    timeout: float,
    cpus: str | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ChildResult:
    """``cpus`` (``taskset -c`` syntax) pins the command and everything it starts.
    ``on_start`` is given the launcher's pid (its process group's too) once it runs: the
    `watch` scenario stops its watcher from another thread."""
    stats = stdout.with_name("rusage.txt")
    stats.unlink(missing_ok=True)
    pinning = [f"--cpus={cpus}"] if cpus else []
    with stdout.open("wb") as out, stderr.open("wb") as err:
        # A session of its own lets a timeout kill the launcher and everything below it.
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(LAUNCHER), str(stats), *pinning, *argv],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        if on_start is not None:
            on_start(process.pid)
        expired = threading.Event()
        watchdog = threading.Timer(timeout, _kill_group, (process.pid, expired))
        watchdog.start()
        try:
            process.wait()
        except BaseException:
            # The bench itself is stopping (Ctrl-C, SIGTERM): take the contender with it.
            _kill_group(process.pid, expired)
            process.wait()
            raise
        finally:
            watchdog.cancel()
    if expired.is_set():
        return ChildResult(-9, timeout, 0.0, 0, timed_out=True)
    return _read_stats(stats)


def _read_stats(path: Path) -> ChildResult:
    try:
        fields = dict(line.split("=", 1) for line in path.read_text().splitlines())
    except (OSError, ValueError) as exc:
        raise LauncherError(f"no figures from the launcher in {path}: {exc}") from exc
    return ChildResult(
        exit_code=int(fields["exit"]),
        wall_seconds=float(fields["wall"]),
        cpu_seconds=float(fields["user"]) + float(fields["system"]),
        peak_rss_bytes=int(fields["tree_peak_one_kib"]) * _KIB,  # Linux reports KiB
        timed_out=False,
        peak_rss_sum_bytes=int(fields["tree_peak_sum_kib"]) * _KIB,
        processes=int(fields["processes"]),
    )


def _kill_group(pid: int, expired: threading.Event) -> None:
    expired.set()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
