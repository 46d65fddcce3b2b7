"""Items from a queue, gathered into batches: the linker's commits and the deleter's requests.

A batch is handed over when it is full, when `window` seconds have passed since its first item,
or when the queue is closed. Closing (`CLOSE` put on the queue) hands over what is waiting and
ends the iteration; nothing is ever dropped."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

CLOSE = object()  # put on the queue to end the iteration after the last batch


def batches(
    items: queue.Queue[object], kind: type[T], *, window: float, size: int
) -> Iterator[list[T]]:
    batch: list[T] = []
    deadline: float | None = None
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            item = items.get(timeout=timeout)
        except queue.Empty:
            item = None
        if isinstance(item, kind):
            batch.append(item)
            if deadline is None:
                deadline = time.monotonic() + window
        if batch and (item is None or item is CLOSE or len(batch) >= size):
            yield batch
            batch, deadline = [], None
        if item is CLOSE:
            return
