"""The batch queue between the workers and the linker or the deleter: full batches at once, a
partial one after its window, one of `min_size` to a consumer already asking, everything at the
close, producers held while it is full, and the consumer left asleep while a batch fills."""

from __future__ import annotations

import threading
import time

import pytest

from s3drain.drain.batches import BatchQueue


def _consume(q: BatchQueue[int]) -> tuple[threading.Thread, list[tuple[float, list[int]]]]:
    got: list[tuple[float, list[int]]] = []

    def run() -> None:
        for batch in q.batches():
            got.append((time.monotonic(), batch))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, got


def test_a_full_batch_goes_at_once_without_waiting_for_its_window() -> None:
    q: BatchQueue[int] = BatchQueue(window=30.0, size=4, maxsize=8)
    thread, got = _consume(q)
    for i in range(8):
        q.put(i)
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [b for _, b in got] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    q.close()
    thread.join(5)
    assert not thread.is_alive()


def test_a_partial_batch_goes_when_its_window_from_the_first_item_has_passed() -> None:
    q: BatchQueue[int] = BatchQueue(window=0.3, size=100, maxsize=100)
    thread, got = _consume(q)
    start = time.monotonic()
    q.put(1)
    time.sleep(0.15)
    q.put(2)  # a later item does not restart the window
    time.sleep(0.6)
    assert len(got) == 1
    at, batch = got[0]
    assert batch == [1, 2]
    assert 0.25 <= at - start < 0.45
    q.close()
    thread.join(5)
    assert [b for _, b in got] == [[1, 2]]


def test_the_close_hands_over_everything_waiting_and_ends_the_iteration() -> None:
    q: BatchQueue[int] = BatchQueue(window=60.0, size=3, maxsize=10)
    for i in range(7):
        q.put(i)
    q.close()
    batches = list(q.batches())
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]


def test_an_empty_queue_closed_yields_nothing() -> None:
    q: BatchQueue[int] = BatchQueue(window=60.0, size=3, maxsize=3)
    q.close()
    assert list(q.batches()) == []


def test_a_producer_waits_while_the_queue_is_full_and_goes_on_once_a_batch_is_taken() -> None:
    q: BatchQueue[int] = BatchQueue(window=60.0, size=2, maxsize=2)
    q.put(1)
    q.put(2)
    put_third = threading.Event()

    def produce() -> None:
        q.put(3)
        put_third.set()

    threading.Thread(target=produce, daemon=True).start()
    assert not put_third.wait(0.3)  # held: two items wait and none was taken
    batches = q.batches()
    assert next(batches) == [1, 2]
    assert put_third.wait(5)
    q.close()
    assert list(batches) == [[3]]


def test_the_consumer_sleeps_while_a_batch_fills() -> None:
    """The point of the queue: items arriving inside a window do not wake the consumer."""
    q: BatchQueue[int] = BatchQueue(window=0.5, size=1000, maxsize=1000)
    wakes = 0
    real_wait = q._ready.wait

    def counting_wait(timeout: float | None = None) -> bool:
        nonlocal wakes
        wakes += 1
        return real_wait(timeout)

    q._ready.wait = counting_wait  # type: ignore[method-assign]
    thread, got = _consume(q)
    time.sleep(0.05)
    for i in range(200):
        q.put(i)
        time.sleep(0.001)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [b for _, b in got] == [list(range(200))]
    # One wait before the first item, one for the window (a spurious wake-up or two at most).
    assert wakes <= 4
    q.close()
    thread.join(5)


def test_a_consumer_already_asking_takes_min_size_items_without_waiting_for_the_window() -> None:
    q: BatchQueue[int] = BatchQueue(window=30.0, size=10, maxsize=20, min_size=3)
    thread, got = _consume(q)
    for i in range(2):
        q.put(i)
    time.sleep(0.2)
    assert got == []  # fewer than min_size: they wait for more, the window or the close
    q.put(2)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [b for _, b in got] == [[0, 1, 2]]
    q.close()
    thread.join(5)
    assert not thread.is_alive()


def test_a_consumer_that_was_busy_takes_up_to_a_full_batch_of_what_gathered_meanwhile() -> None:
    q: BatchQueue[int] = BatchQueue(window=30.0, size=10, maxsize=30, min_size=3)
    for i in range(14):  # while the consumer was busy elsewhere
        q.put(i)
    batches = q.batches()
    assert next(batches) == list(range(10))
    assert next(batches) == [10, 11, 12, 13]
    q.close()
    assert list(batches) == []


@pytest.mark.parametrize("min_size", [0, 11])
def test_a_smallest_batch_outside_one_to_size_is_refused(min_size: int) -> None:
    with pytest.raises(ValueError, match="smallest batch"):
        BatchQueue(window=1.0, size=10, maxsize=10, min_size=min_size)


@pytest.mark.parametrize(("size", "maxsize"), [(0, 1), (5, 4)])
def test_a_batch_that_cannot_fit_its_queue_is_refused(size: int, maxsize: int) -> None:
    with pytest.raises(ValueError, match="cannot wait"):
        BatchQueue(window=1.0, size=size, maxsize=maxsize)
