"""A fetch process: `python -m s3drain.drain.fetch_process FD`, started by `fetch_pool.py`.

One Python process spends about half a millisecond of CPU on each small object's GET, write
and fsync, and one interpreter runs Python on one core at a time. The drain therefore hands
objects below --multipart-threshold to a few of these processes: each runs a thread per
object in flight, each thread one kept-alive connection (`direct_fetch.run`), and sends back
what became of every job. A finished temp file crosses back as an open descriptor (SCM_RIGHTS),
so its lock never lapses between the two processes; the run's own process alone records it in
the ledger, gives it its real name and deletes the object.

A fetch process never links, records or deletes anything: killed at any instant, it leaves at
most a hidden temp file, which the next run sweeps. It ignores Ctrl-C (the run decides when to
stop and says so) and leaves the moment its socket to the run closes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import sys
import threading

from s3drain.collector import tune_collector
from s3drain.drain.direct_fetch import Job, run
from s3drain.drain.fetch_wire import (
    CLOSE,
    READY,
    STOP,
    read_job,
    read_setup,
    receive,
    result_message,
    send,
)
from s3drain.local.fs import LocalFS
from s3drain.s3.direct import Connection


def serve(sock: socket.socket) -> int:
    received = receive(sock)
    if received is None:
        return 1
    setup = read_setup(received[0])
    jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
    stop = threading.Event()
    sending = threading.Lock()
    fs = LocalFS()

    connections: list[Connection] = []

    def work() -> None:
        conn = Connection(setup.endpoint)
        connections.append(conn)
        try:
            while (job := jobs.get()) is not None:
                result, fd = run(job, conn, fs, stop)
                try:
                    with sending:
                        send(sock, result_message(result), fd)
                except OSError:
                    os._exit(0)  # the run has gone: nothing here may outlive it
                finally:
                    if fd is not None:
                        os.close(fd)  # the run holds its own descriptor (and the lock) now
        finally:
            conn.close()

    workers = [
        threading.Thread(target=work, name=f"s3drain-fetch_{n}", daemon=True)
        for n in range(setup.threads)
    ]
    for worker in workers:
        worker.start()
    with sending:
        send(sock, READY)
    while True:
        received = receive(sock)
        if received is None:
            os._exit(0)  # the run has gone (killed, or done): leave now, temp files and all
        message = received[0]
        if message[0] == "job":
            jobs.put(read_job(message))
        elif message == STOP:
            stop.set()
            for conn in connections:  # a GET waiting for an answer ends now, not at its timeout
                conn.abort()
        elif message == CLOSE:
            break
    for _ in workers:
        jobs.put(None)
    for worker in workers:
        worker.join()
    return 0


def main(argv: list[str]) -> int:
    # The run's own process handles Ctrl-C and SIGTERM and tells this one what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sock = socket.socket(fileno=int(argv[0]))
    try:
        return serve(sock)
    except Exception:
        with contextlib.suppress(OSError):
            send(sock, ("fatal", _traceback()))
        return 70


if __name__ == "__main__":
    tune_collector()
    sys.exit(main(sys.argv[1:]))


def _traceback() -> str:
    import traceback  # noqa: PLC0415 - only after a bug; it costs a fetch process 20 ms to load

    return traceback.format_exc()
