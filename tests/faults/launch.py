"""Start `python -m s3drain` under a file-size limit, as if the disk were full.

    python tests/faults/launch.py --fsize BYTES -- <s3drain arguments>

RLIMIT_FSIZE makes any write past BYTES fail; with SIGXFSZ ignored the write returns EFBIG
instead of killing the process, and s3drain treats EFBIG like ENOSPC. The limit is set here and
the process then execs s3drain, because `preexec_fn` is unsafe in the test process, which runs
proxy threads. Both the limit and an ignored signal survive exec. The limit binds root too.
"""

from __future__ import annotations

import os
import resource
import signal
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "--fsize" or argv[2] != "--":
        sys.exit("usage: launch.py --fsize BYTES -- <s3drain arguments>")
    limit = int(argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    os.execv(sys.executable, [sys.executable, "-m", "s3drain", *argv[3:]])  # noqa: S606 - exec is the point


if __name__ == "__main__":
    main(sys.argv[1:])
