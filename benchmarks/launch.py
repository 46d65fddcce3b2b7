"""Start one command, wait for it, and write its own resource usage to a file.

    python -I -S benchmarks/launch.py STATS_FILE [--cpus=LIST] COMMAND [ARG ...]

Why a launcher at all: Linux counts the memory of the process that forked a child into the
child's peak RSS (the forked copy's high-water mark survives exec), so a child forked by the
bench runner, which holds datasets and clients, would report at least the runner's RSS. This
launcher is a bare interpreter (``-I -S``, nothing imported beyond ``os``, ``select``,
``sys``, ``time``):
a child's peak RSS is exact whenever it exceeds the launcher's few MiB. Deliberately free of
the ``benchmarks`` package so it can run without site-packages.

Memory of a process tree: ``wait4`` reports the largest peak of any single process in the
tree it waited for, never their sum, so a drain that starts worker processes would look as
small as its biggest one. While the command runs, the launcher samples /proc every
``_INTERVAL`` seconds: every process below the child (``/proc/PID/task/TID/children``), each
one's own high-water mark (``VmHWM``, exact however short the peak) and the sum of their
proportional set sizes (``Pss`` of ``smaps_rollup``: a page shared by N processes, such as a
forked parent's or a library's, counts 1/N in each, so the sum is the memory the tree takes,
where a sum of RSS would count shared pages once per process). A peak of the sum shorter than
the interval can be missed; the per-process peaks cannot.

``--cpus=0-1`` pins the command (``sched_setaffinity`` before ``exec``; its threads and
children inherit it).
"""

import os
import select
import sys
import time

_INTERVAL = 0.05


def _cpus(text: str) -> set[int]:
    """``taskset -c`` syntax: ``1``, ``0-1``, ``0,2-3``."""
    found: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        found.update(range(int(first), int(last or first) + 1))
    return found


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as file:
                kids += [int(word) for word in file.read().split()]
        except (OSError, ValueError):
            pass  # the thread or the process is gone
    return kids


def tree(root: int) -> list[int]:
    """``root`` and every process below it that is alive now."""
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending += _children(pid)
    return found


def _field_kib(path: str, name: str) -> int:
    try:
        with open(path) as file:
            for line in file:
                if line.startswith(name):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def memory_kib(pid: int) -> tuple[int, int]:
    """(Pss, VmHWM) of a process; zeros once it has exited (a zombie has neither)."""
    hwm = _field_kib(f"/proc/{pid}/status", "VmHWM:")
    return _field_kib(f"/proc/{pid}/smaps_rollup", "Pss:"), hwm


class TreeMemory:
    """The peaks of a process tree over the samples taken."""

    def __init__(self) -> None:
        self.peak_one_kib = 0  # the largest high-water mark of any one process
        self.peak_sum_kib = 0  # the largest sum of the tree's Pss at one moment
        self.processes: set[int] = set()

    def sample(self, root: int) -> None:
        total = 0
        for pid in tree(root):
            pss, hwm = memory_kib(pid)
            if not hwm:
                continue
            self.processes.add(pid)
            total += pss
            self.peak_one_kib = max(self.peak_one_kib, hwm)
        self.peak_sum_kib = max(self.peak_sum_kib, total)


def main() -> None:
    stats_path, argv = sys.argv[1], sys.argv[2:]
    cpus = None
    if argv and argv[0].startswith("--cpus="):
        cpus, argv = _cpus(argv[0].split("=", 1)[1]), argv[1:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            if cpus is not None:
                os.sched_setaffinity(0, cpus)
            os.execvp(argv[0], argv)  # noqa: S606 - the argv list the runner built
        finally:
            os._exit(127)  # exec failed: the shell's "command not found"
    memory = TreeMemory()
    # A pidfd is readable the moment the child exits: the wall time does not wait for the
    # next sample.
    exited = os.pidfd_open(pid)
    while True:
        memory.sample(pid)
        ready, _, _ = select.select([exited], [], [], _INTERVAL)
        if ready:
            break
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    os.close(exited)
    peak_one = max(memory.peak_one_kib, usage.ru_maxrss)
    fields = {
        "exit": os.waitstatus_to_exitcode(status),
        "wall": wall,
        "user": usage.ru_utime,
        "system": usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
        "tree_peak_one_kib": peak_one,
        # Never below its largest process: a tree that ended between two samples, or one
        # process whose Pss is a little under its RSS (libraries shared with the system).
        "tree_peak_sum_kib": max(memory.peak_sum_kib, peak_one),
        "processes": max(len(memory.processes), 1),
    }
    with open(stats_path, "w") as stats:
        stats.writelines(f"{name}={value}\n" for name, value in fields.items())


if __name__ == "__main__":
    main()
