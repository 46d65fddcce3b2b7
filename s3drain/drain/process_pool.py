"""The fetch processes (`fetch_process.py`) seen from the run: started at the first job, one
socketpair each, a thread reading each one's answers, every job one attempt (`fetch_pool.py`).

A fetch process that dies fails its jobs in flight as a closed connection (retried, on another
or a restarted process); one that cannot start at all leaves the run to this process's own
threads, with a warning.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from s3drain.drain.direct_fetch import Done, Failed, Job
from s3drain.drain.fetch_pool import InlinePool, failure
from s3drain.drain.fetch_wire import (
    CLOSE,
    READY,
    STOP,
    Message,
    Setup,
    job_message,
    read_result,
    receive,
    send,
    setup_message,
)
from s3drain.records import ObjectRecord
from s3drain.s3.direct import Endpoint
from s3drain.s3.sigv4 import Credentials

START_SECONDS = 30.0
CLOSE_SECONDS = 5.0
RESTARTS = 3  # per process slot, before the run goes on without it


class _Waiter:
    __slots__ = ("done", "fd", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Done | Failed | None = None
        self.fd: int | None = None


class _Child:
    """One fetch process: its socket, its jobs in flight, the thread reading its answers."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket, log: IO[bytes]):
        self.process = process
        self.sock = sock
        self.log = log  # its stderr, for the message if it dies
        self.waiting: dict[int, _Waiter] = {}
        self.lock = threading.Lock()  # one sender at a time; `waiting` changes under it
        self.alive = True
        self.reader = threading.Thread(target=self._read, name="s3drain-fetch-reader", daemon=True)

    def submit(self, job: Job, waiter: _Waiter) -> bool:
        with self.lock:
            if not self.alive:
                return False
            self.waiting[job.id] = waiter
        try:
            send(self.sock, job_message(job))  # one packet: senders need no lock of their own
        except OSError:
            with self.lock:
                self.waiting.pop(job.id, None)
            return False
        return True

    def tell(self, message: Message) -> None:
        with self.lock, contextlib.suppress(OSError):
            send(self.sock, message)

    def _read(self) -> None:
        try:
            while (received := receive(self.sock)) is not None:
                message, fds = received
                result = read_result(message)
                if result is None:
                    for fd in fds:
                        os.close(fd)
                    continue
                with self.lock:
                    waiter = self.waiting.pop(result.id, None)
                if waiter is None:  # nobody waits (cannot happen): never leak the lock
                    for fd in fds:
                        os.close(fd)
                    continue
                waiter.result, waiter.fd = result, (fds[0] if fds else None)
                waiter.done.set()
        except OSError:
            pass
        finally:
            self._ended()

    def _ended(self) -> None:
        """The process is gone: every job it held fails as a closed connection (retried)."""
        with self.lock:
            self.alive = False
            left, self.waiting = self.waiting, {}
        for job_id, waiter in left.items():
            waiter.result = Failed(job_id, "link", "the fetch process ended", 0, code="closed")
            waiter.done.set()

    def close(self, grace: float) -> None:
        self.tell(CLOSE)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.reader.is_alive():
            self.reader.join(grace)
        self.log.close()

    def stderr_tail(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.log.seek(0)
            return self.log.read()[-2000:].decode("utf-8", "replace").strip()
        return ""


class ProcessPool:
    """`processes` fetch processes of `threads` threads each, started at the first job."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        processes: int,
        threads: int,
        credentials: Callable[[], Credentials],
        count: Callable[[int], None],
        stop: threading.Event,
        endpoint_url: str,
        warn: Callable[[str], None],
    ) -> None:
        self._endpoint = endpoint
        self._processes = processes
        self._threads = threads
        self._credentials = credentials
        self._count = count
        self._stop = stop
        self._url = endpoint_url
        self._warn = warn
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._children: list[_Child | None] = []
        self._live: tuple[_Child, ...] = ()  # read without the lock on every job
        self._restarts = [0] * processes
        self._stopped = False
        self._inline: InlinePool | None = None  # where no fetch process could start

    def fetch(self, record: ObjectRecord, temp: str) -> tuple[Done, int]:
        if self._stop.is_set():
            self._tell_stop()
        child = self._pick()
        if child is None:
            return self._fallback().fetch(record, temp)
        job = Job(next(self._ids), record, temp, self._credentials())
        waiter = _Waiter()
        if not child.submit(job, waiter):
            waiter.result = Failed(job.id, "link", "the fetch process ended", 0, code="closed")
        else:
            while not waiter.done.wait(0.2):
                if self._stop.is_set():
                    self._tell_stop()
        result = waiter.result
        assert result is not None
        self._count(result.requests)
        if isinstance(result, Done):
            assert waiter.fd is not None
            return result, waiter.fd
        raise failure(result, self._url)

    def close(self) -> None:
        with self._lock:
            children, self._children = [c for c in self._children if c is not None], []
            self._live = ()
        for child in children:
            child.close(CLOSE_SECONDS)
        if self._inline is not None:
            self._inline.close()

    def _tell_stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            children = [c for c in self._children if c is not None]
        for child in children:
            child.tell(STOP)

    def _pick(self) -> _Child | None:
        """The live process with the fewest jobs in flight (dead ones restarted, a few times)."""
        live = self._live
        if live and all(c.alive for c in live):
            return min(live, key=lambda c: len(c.waiting))
        with self._lock:
            if not self._children:
                self._children = [self._start(n) for n in range(self._processes)]
            for n, child in enumerate(self._children):
                if child is not None and not child.alive:
                    self._children[n] = self._restart(n, child)
            self._live = tuple(c for c in self._children if c is not None and c.alive)
            live = self._live
        return min(live, key=lambda c: len(c.waiting)) if live else None

    def _restart(self, n: int, dead: _Child) -> _Child | None:
        tail = dead.stderr_tail()
        dead.close(0)
        if self._restarts[n] >= RESTARTS:
            return None
        self._restarts[n] += 1
        self._warn(
            f"a fetch process ended unexpectedly (exit {dead.process.returncode})"
            + (f": {tail.splitlines()[-1]}" if tail else "")
            + "; starting another"
        )
        return self._start(n)

    def _start(self, n: int) -> _Child | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = tempfile.TemporaryFile(prefix="s3drain-fetch-")  # noqa: SIM115 - the child owns it
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "s3drain.drain.fetch_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=_child_environment(),
                # Its own session: Ctrl-C at the terminal reaches the run, which tells it.
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            log.close()
            self._warn(f"cannot start a fetch process ({exc.strerror}); fetching in this one")
            return None
        finally:
            theirs.close()
        child = _Child(process, ours, log)
        ready = self._handshake(child)
        if ready is not None:
            child.close(0)
            self._restarts[n] = RESTARTS
            self._warn(f"a fetch process did not start ({ready}); fetching in this one")
            return None
        child.reader.start()
        return child

    def _handshake(self, child: _Child) -> str | None:
        """None when the process is ready; else why not."""
        try:
            send(child.sock, setup_message(Setup(self._endpoint, self._threads)))
            child.sock.settimeout(START_SECONDS)
            received = receive(child.sock)
            child.sock.settimeout(None)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        if received is None:
            tail = child.stderr_tail()
            return tail.splitlines()[-1] if tail else "it exited at once"
        message = received[0]
        if message != READY:
            return str(message)[-300:]
        return None

    def _fallback(self) -> InlinePool:
        with self._lock:
            if self._inline is None:
                self._inline = InlinePool(
                    self._endpoint,
                    credentials=self._credentials,
                    count=self._count,
                    stop=self._stop,
                    endpoint_url=self._url,
                )
            return self._inline


def _child_environment() -> dict[str, str]:
    """The run's environment, with this copy of s3drain first on the import path (the run may
    have been started from a checkout that is not installed)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding `s3drain/`
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
