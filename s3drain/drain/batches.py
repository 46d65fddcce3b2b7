"""Items handed over between threads, gathered into batches: the linker's commits and the
deleter's requests.

A batch is handed over when it is full, when `window` seconds have passed since its first item,
when `min_size` items wait for a consumer that is already asking (it has a free hand now, so a
smaller batch costs a request but no waiting), or when the queue is closed. Closing hands over
what is waiting and ends the iteration; nothing is ever dropped.

The consumer sleeps until a batch is ready, not until the next item: a `queue.Queue` read with a
timeout woke the linker and the deleter once per object, and on a small-object drain those
wake-ups (a futex and a context switch each, twice per object) were a measurable share of the
run's CPU. A producer wakes the consumer only for the first item of a batch, a batch of
`min_size` or the close.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchQueue(Generic[T]):
    """Bounded: `put` waits while `maxsize` items wait, so a slow consumer holds producers back
    instead of letting them pile up open files or memory."""

    def __init__(
        self, *, window: float, size: int, maxsize: int, min_size: int | None = None
    ) -> None:
        if size < 1 or maxsize < size:
            raise ValueError(f"a batch of {size} cannot wait in a queue of {maxsize}")
        if min_size is not None and not 1 <= min_size <= size:
            raise ValueError(f"a smallest batch of {min_size} does not fit batches of {size}")
        self._window = window
        self._size = size
        self._min_size = size if min_size is None else min_size
        self._maxsize = maxsize
        self._items: deque[T] = deque()
        self._first_at = 0.0  # when the oldest waiting item's batch began
        self._closed = False
        lock = threading.Lock()
        self._ready = threading.Condition(lock)  # the consumer waits here
        self._room = threading.Condition(lock)  # producers wait here while the queue is full

    def put(self, item: T) -> None:
        with self._ready:
            while len(self._items) >= self._maxsize:
                self._room.wait()
            self._items.append(item)
            waiting = len(self._items)
            if waiting == 1:
                self._first_at = time.monotonic()
                self._ready.notify()  # the consumer sleeps without a deadline until now
            elif waiting == self._min_size:
                self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def batches(self) -> Iterator[list[T]]:
        """The consumer's side: one thread iterates this until the queue is closed."""
        while True:
            with self._ready:
                while not self._closed and len(self._items) < self._min_size:
                    if not self._items:
                        self._ready.wait()
                        continue
                    left = self._first_at + self._window - time.monotonic()
                    if left <= 0:
                        break
                    self._ready.wait(left)
                take = min(self._size, len(self._items))
                batch = [self._items.popleft() for _ in range(take)]
                if self._items:  # the rest begins the next batch's window now
                    self._first_at = time.monotonic()
                ended = self._closed and not self._items
                if batch:
                    self._room.notify_all()
            if batch:
                yield batch
            if ended:
                return
