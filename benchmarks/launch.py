"""Start one command, wait for it, and write its own resource usage to a file.

    python -I -S benchmarks/launch.py STATS_FILE COMMAND [ARG ...]

Why a launcher at all: Linux counts the memory of the process that forked a child into the
child's peak RSS (the forked copy's high-water mark survives exec), so a child forked by the
bench runner, which holds datasets and clients, would report at least the runner's RSS. This
launcher is a bare interpreter (``-I -S``, nothing imported beyond ``os``, ``sys``, ``time``):
a child's peak RSS is exact whenever it exceeds the launcher's few MiB. Deliberately free of
the ``benchmarks`` package so it can run without site-packages.
"""

import os
import sys
import time


def main() -> None:
    stats_path, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)  # noqa: S606 - the argv list the runner built
        finally:
            os._exit(127)  # exec failed: the shell's "command not found"
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    fields = {
        "exit": os.waitstatus_to_exitcode(status),
        "wall": wall,
        "user": usage.ru_utime,
        "system": usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
    }
    with open(stats_path, "w") as stats:
        stats.writelines(f"{name}={value}\n" for name, value in fields.items())


if __name__ == "__main__":
    main()
