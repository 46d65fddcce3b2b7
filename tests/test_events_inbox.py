"""events/inbox.py against real SQS servers (moto's and LocalStack's): a message leaves the queue
only when all it names is settled; duplicates share one settlement; the heartbeat holds; a stop
hands messages back at once; failures of every SQS call are read and counted."""

from __future__ import annotations

import json
import threading
import time
import types
from typing import Any

import pytest

from s3drain.events import calls
from s3drain.events.tracker import ObjectRef
from tests.support.eventkit import (
    Notes,
    collect,
    depth,
    make_queue,
    peek,
    running_inbox,
    s3_event_body,
    sqs_client,
    wait_for,
)


@pytest.fixture
def sqs(events_url: str) -> Any:
    client = sqs_client(events_url)
    yield client
    client.close()


def send(sqs: Any, queue_url: str, body: str) -> str:
    message_id: str = sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"]
    return message_id


def visible_within(sqs: Any, queue_url: str, seconds: float) -> list[str]:
    """The ids of the first messages a receive gets within `seconds` (visible again, that is)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)
        if answer.get("Messages"):
            return [m["MessageId"] for m in answer["Messages"]]
    return []


def test_a_settled_object_deletes_its_message(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("in/a+b%2Bc.csv"))
    with running_inbox(events_url, queue_url, prefix="in/") as inbox:
        [received] = collect(inbox, 1)
        assert received.todo == (ObjectRef("lake", "in/a b+c.csv", "e1", None, "01"),)
        assert received.message.sent_at is not None
        assert received.message.receive_count == 1
        assert depth(sqs, queue_url) == 1  # held, not deleted, until settled
        inbox.settled(received.todo[0], "done")
        wait_for(lambda: inbox.counters().deleted == 1, what="the delete")
        assert depth(sqs, queue_url) == 0
        counters = inbox.counters()
        assert (counters.received, counters.in_flight, counters.left) == (1, 0, 0)


def test_duplicates_wait_for_one_settlement(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    for _ in range(3):
        send(sqs, queue_url, s3_event_body("k"))
    with running_inbox(events_url, queue_url, receivers=1) as inbox:
        wait_for(lambda: inbox.counters().received == 3, what="three messages")
        batches = collect(inbox, 1, timeout=2)
        todos = [ref for r in batches for ref in r.todo]
        assert todos == [ObjectRef("lake", "k", "e1", None, "01")]  # asked to drain once
        assert inbox.counters().in_flight == 3
        inbox.settled(todos[0], "done")
        wait_for(lambda: inbox.counters().deleted == 3, what="three deletes")
        assert depth(sqs, queue_url) == 0


def test_a_newer_version_of_the_key_is_drained_and_settled_on_its_own(
    events_url: str, sqs: Any
) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("k", etag="old", seq="0A"))
    send(sqs, queue_url, s3_event_body("k", etag="new", seq="0B"))
    with running_inbox(events_url, queue_url) as inbox:
        found = collect(inbox, 2)
        refs = {ref.etag: ref for r in found for ref in r.todo}
        assert set(refs) == {"old", "new"}
        inbox.settled(refs["old"], "done")
        wait_for(lambda: inbox.counters().deleted == 1, what="the old one's delete")
        time.sleep(0.3)
        assert depth(sqs, queue_url) == 1  # the newer version's message still waits
        inbox.settled(refs["new"], "done")
        wait_for(lambda: depth(sqs, queue_url) == 0, what="the new one's delete")


def test_a_message_naming_two_objects_waits_for_both(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    body = json.loads(s3_event_body("one"))
    body["Records"] += json.loads(s3_event_body("two"))["Records"]
    send(sqs, queue_url, json.dumps(body))
    with running_inbox(events_url, queue_url) as inbox:
        [received] = collect(inbox, 2)
        first, second = received.todo
        inbox.settled(first, "done")
        time.sleep(0.5)
        assert inbox.counters().deleted == 0
        assert depth(sqs, queue_url) == 1
        inbox.settled(second, "done")
        wait_for(lambda: depth(sqs, queue_url) == 0, what="the delete")


def test_a_failed_object_leaves_its_message_to_come_back(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("k"))
    notes = Notes()
    with running_inbox(events_url, queue_url, visibility_timeout=2, notes=notes) as inbox:
        [received] = collect(inbox, 1)
        inbox.settled(received.todo[0], "retry")
        counters = inbox.counters()
        assert (counters.left, counters.deleted, counters.in_flight) == (1, 0, 0)
        assert "left" in notes.kinds()
        # Not deleted, not extended: it comes back once its visibility runs out.
        again = collect(inbox, 1, timeout=8)
        assert again and again[0].message.message_id == received.message.message_id
        assert again[0].message.receive_count >= 2
        inbox.settled(again[0].todo[0], "done")
        wait_for(lambda: depth(sqs, queue_url) == 0, what="the delete")


def test_a_failure_while_stopping_hands_its_message_back_at_once(events_url: str) -> None:
    """Also when a receiver's long poll takes the released message again at once, before the
    release has returned (LocalStack answers a waiting poll the moment a message is visible):
    that receive is a new hold, released at the close, not forgotten with the old one. The
    hook holds each release's answer back for 1.5 s so the receivers (1 s polls) get there
    first, every time."""
    sqs = sqs_client(events_url)
    queue_url, _ = make_queue(sqs, "released-at-the-stop")
    send(sqs, queue_url, s3_event_body("k"))

    def slow_releases(client: Any) -> None:
        client.meta.events.register(
            "after-call.sqs.ChangeMessageVisibilityBatch", lambda **_: time.sleep(1.5)
        )

    with running_inbox(
        events_url, queue_url, visibility_timeout=60, client_hook=slow_releases
    ) as inbox:
        [received] = collect(inbox, 1)
        inbox.settled(received.todo[0], "retry", stopping=True)
        counters = inbox.counters()
        assert counters.released == 1 and counters.left == 0
        # Taken again meanwhile by a receiver: held anew, not lost for its 60 s.
        assert counters.received == 2 and counters.in_flight == 1
    # Visible again now, not in 60 s: the close released the second hold.
    back = visible_within(sqs, queue_url, 10.0)
    sqs.close()
    assert back == [received.message.message_id]


def test_a_message_admitted_just_after_the_stop_is_handed_back_at_the_close(
    events_url: str,
) -> None:
    """A receive that answered before the stop and was admitted after the close's release:
    the close hands it back too once the receivers are done, so it is visible again at once,
    not after its 60 s."""
    sqs = sqs_client(events_url)
    queue_url, _ = make_queue(sqs, "admitted-late")
    entered, released = threading.Event(), threading.Event()
    with running_inbox(events_url, queue_url, visibility_timeout=60, receivers=1) as inbox:
        real_admit, real_release = inbox._admit, inbox.release_unfinished

        def late_admit(message: Any) -> Any:
            entered.set()
            released.wait(10)  # the close's release runs meanwhile, and misses this one
            return real_admit(message)

        def release_then_admit() -> int:
            count = real_release()
            released.set()
            return count

        inbox._admit = late_admit  # type: ignore[method-assign]
        inbox.release_unfinished = release_then_admit  # type: ignore[method-assign]
        send(sqs, queue_url, s3_event_body("k"))
        assert entered.wait(10)
    counters = inbox.counters()
    assert (counters.received, counters.released, counters.in_flight) == (1, 1, 0)
    back = visible_within(sqs, queue_url, 10.0)
    sqs.close()
    assert len(back) == 1


def test_bad_messages_stay_for_the_dead_letter_queue_and_are_noted_once(
    events_url: str, sqs: Any
) -> None:
    queue_url, _ = make_queue(sqs, "q")
    bad_id = send(sqs, queue_url, "this is not JSON")
    send(sqs, queue_url, s3_event_body("good"))
    notes = Notes()
    with running_inbox(events_url, queue_url, visibility_timeout=1, notes=notes) as inbox:
        [good] = collect(inbox, 1)
        inbox.settled(good.todo[0], "done")
        # Received at least twice (its visibility is 1 s), logged and counted once.
        wait_for(lambda: inbox.counters().received >= 3, timeout=10, what="a second receive")
        counters = inbox.counters()
        assert counters.bad == 1
        assert [n.message_id for n in notes.items if n.kind == "bad"] == [bad_id]
        assert "not JSON" in next(n.detail for n in notes.items if n.kind == "bad")
        assert counters.deleted == 1
    assert depth(sqs, queue_url) == 1  # the bad one is still there


def test_a_test_event_is_acknowledged(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    body = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-23T19:09:09.000Z"}
    send(sqs, queue_url, json.dumps({**body, "Bucket": "lake"}))
    notes = Notes()
    with running_inbox(events_url, queue_url, notes=notes) as inbox:
        wait_for(lambda: inbox.counters().deleted == 1, what="the delete")
        assert inbox.counters().test_events == 1
        assert notes.kinds() == ["test"]
    assert depth(sqs, queue_url) == 0


@pytest.mark.parametrize(
    ("bucket", "key"), [("other-bucket", "in/a.csv"), ("lake", "out/a.csv"), ("lake", "i")]
)
def test_records_for_another_bucket_or_prefix_are_acknowledged_not_drained(
    events_url: str, sqs: Any, bucket: str, key: str
) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body(key, bucket=bucket))
    notes = Notes()
    with running_inbox(events_url, queue_url, prefix="in/", notes=notes) as inbox:
        wait_for(lambda: inbox.counters().deleted == 1, what="the delete")
        assert inbox.counters().ignored == 1
        assert notes.kinds() == ["ignored"]
        assert f"s3://{bucket}/{key}" in notes.items[0].detail
        assert collect(inbox, 1, timeout=0.5) == [] or all(
            not r.todo for r in collect(inbox, 1, timeout=0.5)
        )
    assert depth(sqs, queue_url) == 0


def test_removal_events_need_no_drain(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    body = json.loads(s3_event_body("k"))
    body["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    send(sqs, queue_url, json.dumps(body))
    with running_inbox(events_url, queue_url) as inbox:
        wait_for(lambda: inbox.counters().deleted == 1, what="the delete")
        assert inbox.counters().ignored == 0


def test_the_heartbeat_keeps_a_held_message_from_other_consumers(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("slow"))
    with running_inbox(events_url, queue_url, visibility_timeout=2, heartbeat_every=0.4) as inbox:
        [received] = collect(inbox, 1)
        deadline = time.monotonic() + 6  # three visibility timeouts
        while time.monotonic() < deadline:
            assert peek(sqs, queue_url) == []
            time.sleep(0.5)
        assert inbox.counters().visibility_lost == 0
        inbox.settled(received.todo[0], "done")
        wait_for(lambda: depth(sqs, queue_url) == 0, what="the delete")


def test_a_beat_that_crosses_the_delete_of_its_message_is_no_lost_visibility(
    s3_url: str,
) -> None:
    """Found by the fault suite's watch trials (their slow start has SQS answer in 0.4 s): a
    heartbeat's ChangeMessageVisibilityBatch crossed the deleter's DeleteMessageBatch of a
    settled message; SQS refused the beat's entry for the deleted message
    (ReceiptHandleIsInvalid), and the inbox counted it as `visibility_lost` and warned, at the
    default verbosity, that another consumer might hold a message that was in fact done.
    Here the deleter is held right after SQS executed its delete, and the beat goes then."""
    sqs = sqs_client(s3_url)
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("k"))
    deleted, release = threading.Event(), threading.Event()

    def hold_the_deleter(client: Any) -> None:
        def after_delete(**_: Any) -> None:
            deleted.set()
            release.wait(10)

        client.meta.events.register("after-call.sqs.DeleteMessageBatch", after_delete)

    notes = Notes()
    with running_inbox(
        s3_url,
        queue_url,
        visibility_timeout=2,
        heartbeat_every=60,
        client_hook=hold_the_deleter,
        notes=notes,
    ) as inbox:
        [received] = collect(inbox, 1)
        time.sleep(1.2)  # due for a beat: its visibility ends within half a timeout
        inbox.settled(received.todo[0], "done")
        assert deleted.wait(5)
        try:
            inbox.extend_due()
        finally:
            release.set()
        wait_for(lambda: inbox.counters().deleted == 1, what="the delete")
        assert inbox.counters().visibility_lost == 0
        assert "visibility-lost" not in notes.kinds()
    sqs.close()


def test_a_stop_makes_unfinished_messages_visible_at_once(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    for key in ("a", "b", "c"):
        send(sqs, queue_url, s3_event_body(key))
    with running_inbox(events_url, queue_url, visibility_timeout=300) as inbox:
        found = collect(inbox, 3)
        done = next(ref for r in found for ref in r.todo if ref.key == "a")
        inbox.settled(done, "done")
        released = inbox.release_unfinished()
        assert released == 2
        counters = inbox.counters()
        assert (counters.deleted, counters.released, counters.in_flight) == (1, 2, 0)
    # Visible now, not in 300 s.
    keys = {
        json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"] for m in peek(sqs, queue_url, 1)
    }
    assert keys == {"b", "c"}


def test_a_released_message_whose_object_then_finishes_is_deleted_after_all(
    events_url: str, sqs: Any
) -> None:
    """A stop hands back the messages of objects still in the run's hands (a delete waiting for
    its batch). The run finishes those objects: a message whose objects all end done leaves the
    queue, one whose object failed or was cut short stays visible for the next watcher."""
    queue_url, _ = make_queue(sqs, "q")
    for key in ("done", "failed", "v"):
        send(sqs, queue_url, s3_event_body(key))
    send(sqs, queue_url, s3_event_body("v", etag="e2"))  # another version of v: another object
    with running_inbox(events_url, queue_url, visibility_timeout=300) as inbox:
        found = collect(inbox, 4)
        refs = {ref.key + (ref.etag or ""): ref for r in found for ref in r.todo}
        assert inbox.release_unfinished() == 4
        inbox.settled(refs["donee1"], "done")
        inbox.settled(refs["failede1"], "retry")
        inbox.settled(refs["ve1"], "done")
        wait_for(lambda: inbox.counters().deleted == 2, what="two deletes after the release")
        counters = inbox.counters()
        # Four, though a receiver whose long poll got some back after the stop handed them
        # back again (LocalStack does this): each message is counted once.
        assert (counters.released, counters.deleted, counters.in_flight) == (4, 2, 0)
    left = sorted(
        json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"]
        + json.loads(m["Body"])["Records"][0]["s3"]["object"]["eTag"]
        for m in peek(sqs, queue_url, 1)
    )
    assert left == ["failede1", "ve2"]


def test_a_released_message_taken_by_another_watcher_is_not_a_failed_delete(
    events_url: str, sqs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Released at a stop, a message may go to another consumer before its object is done
    here: the late delete's handle is stale by then, and SQS may refuse it (AWS answers
    ReceiptHandleIsInvalid; moto and LocalStack accept it, so the refusal is injected). No
    failure worth a warning: the other consumer holds the message and finds the object gone.
    A held message's refused delete still is one."""
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("released"))
    send(sqs, queue_url, s3_event_body("held"))
    attempted: list[str] = []

    def stale(client: Any, url: str, messages: Any, retry: Any) -> calls.BatchResult:
        attempted.extend(json.loads(m.body)["Records"][0]["s3"]["object"]["key"] for m in messages)
        failed = [calls.EntryFailure(m, "ReceiptHandleIsInvalid", "stale") for m in messages]
        return calls.BatchResult((), tuple(failed))

    notes = Notes()
    with running_inbox(events_url, queue_url, visibility_timeout=300, notes=notes) as inbox:
        found = {ref.key: ref for r in collect(inbox, 2) for ref in r.todo}
        monkeypatch.setattr(calls, "delete", stale)
        inbox.settled(found["held"], "done")
        wait_for(lambda: inbox.counters().delete_failed == 1, what="the held one's refusal")
        assert inbox.release_unfinished() == 1
        inbox.settled(found["released"], "done")
        wait_for(lambda: "released" in attempted, what="the released one's delete")
        time.sleep(0.2)  # its answer counted, if it were counted
        assert inbox.counters().delete_failed == 1
        assert notes.kinds() == ["delete-failed"]


def test_receivers_pause_at_max_in_flight(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    for n in range(6):
        send(sqs, queue_url, s3_event_body(f"k{n}"))
    with running_inbox(
        events_url, queue_url, max_in_flight=2, receivers=1, max_messages=1
    ) as inbox:
        found = collect(inbox, 2)
        time.sleep(1.5)
        assert inbox.counters().in_flight == 2  # four more wait in the queue
        assert depth(sqs, queue_url) == 6
        seen = {ref.key for r in found for ref in r.todo}
        while len(seen) < 6:
            for r in found:
                inbox.settled(r.todo[0], "done")
            found = collect(inbox, 1, timeout=10)
            assert found, "the receivers did not go on after room was made"
            assert inbox.counters().in_flight <= 2
            seen |= {ref.key for r in found for ref in r.todo}
        for r in found:
            inbox.settled(r.todo[0], "done")
        wait_for(lambda: depth(sqs, queue_url) == 0, what="every delete")


def test_oldest_age_comes_from_sent_timestamp(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("k"))
    time.sleep(1.2)
    with running_inbox(events_url, queue_url) as inbox:
        collect(inbox, 1)
        age = inbox.counters().oldest_age
        assert age is not None and 1.0 <= age < 60


def test_a_note_callback_may_read_the_counters(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    seen: list[int] = []
    holder: dict[str, Any] = {}

    class Reader(Notes):
        def __call__(self, note: Any) -> None:
            seen.append(holder["inbox"].counters().bad)  # under the inbox's lock: no deadlock

    with running_inbox(events_url, queue_url, notes=Reader()) as inbox:
        holder["inbox"] = inbox
        send(sqs, queue_url, "not json")
        wait_for(lambda: seen == [1], what="the note")
        assert inbox.failure is None


def test_a_bug_in_a_receiver_surfaces_from_receive(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")

    class Broken(Notes):
        def __call__(self, note: Any) -> None:
            raise RuntimeError("a bug in the note callback")

    with running_inbox(events_url, queue_url, notes=Broken()) as inbox:
        send(sqs, queue_url, "not json")
        with pytest.raises(RuntimeError, match="a bug in the note callback"):
            for _ in range(40):
                inbox.receive(timeout=0.5)


class _ReceiveCalls:
    """Counts the ReceiveMessage calls a client starts."""

    def __init__(self) -> None:
        self.count = 0

    def hook(self, client: Any) -> None:
        client.meta.events.register("before-call.sqs.ReceiveMessage", self._one)

    def _one(self, **_: Any) -> None:
        self.count += 1

    def settle(self, quiet: float, within: float) -> bool:
        """Whether a spell of `quiet` seconds without a new call came within `within`."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            before = self.count
            time.sleep(quiet)
            if self.count == before:
                return True
        return False


@pytest.mark.parametrize("rest", [0.0, 30.0])
def test_once_receivers_rest_on_a_drained_queue_so_the_stop_waits_for_no_poll(
    events_url: str, sqs: Any, rest: float
) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("a"))
    calls_ = _ReceiveCalls()
    with running_inbox(
        events_url, queue_url, client_hook=calls_.hook, rest_when_drained=rest
    ) as inbox:
        [received] = collect(inbox, 1)
        inbox.settled(received.todo[0], "done")
        wait_for(lambda: inbox.counters().deleted == 1, what="the delete")
        wait_for(inbox.drained, what="two empty answers", timeout=10)
        if not rest:  # the control: without the rest the receivers keep long-polling
            assert not calls_.settle(quiet=1.2, within=2.5)
            return
        assert calls_.settle(quiet=1.5, within=6), "the receivers went on polling"
        polls = calls_.count
        started = time.monotonic()
        inbox.close(timeout=5)
        assert time.monotonic() - started < 0.5  # no long poll in flight to wait for
        assert calls_.count == polls


def test_a_receiver_does_not_rest_while_a_message_is_held(events_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("a"))
    calls_ = _ReceiveCalls()
    with running_inbox(
        events_url, queue_url, client_hook=calls_.hook, rest_when_drained=30.0
    ) as inbox:
        [received] = collect(inbox, 1)
        wait_for(inbox.drained, what="two empty answers", timeout=10)
        # Held and not settled: its object may yet fail, and a new message may come meanwhile.
        assert not calls_.settle(quiet=1.2, within=2.5)
        send(sqs, queue_url, s3_event_body("b"))
        [second] = collect(inbox, 1)
        assert [ref.key for ref in second.todo] == ["b"]
        inbox.settled(received.todo[0], "done")
        inbox.settled(second.todo[0], "done")
        wait_for(lambda: inbox.counters().deleted == 2, what="the deletes")
        assert calls_.settle(quiet=1.5, within=6), "the receivers went on polling"


class _GatedReceives:
    """Holds every ReceiveMessage call until the test answers it: "queue" lets it go to the
    server, "empty" answers it with no message without asking the server."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.waiting: list[int] = []  # calls held, in the order they came
        self._answers: dict[int, str] = {}
        self._calls = 0

    def hook(self, client: Any) -> None:
        client.meta.events.register("before-call.sqs.ReceiveMessage", self._held)

    def _held(self, **_: Any) -> Any:
        with self._lock:
            self._calls += 1
            call = self._calls
            self.waiting.append(call)
            self._lock.notify_all()
            self._lock.wait_for(lambda: call in self._answers, timeout=30)
            answer = self._answers.pop(call, "empty")
        if answer == "queue":
            return None  # botocore sends it
        return types.SimpleNamespace(status_code=200, headers={}), {}

    def wait_for_calls(self, count: int) -> list[int]:
        with self._lock:
            assert self._lock.wait_for(lambda: len(self.waiting) >= count, timeout=10)
            return list(self.waiting)

    def answer(self, call: int, how: str) -> None:
        with self._lock:
            self.waiting.remove(call)
            self._answers[call] = how
            self._lock.notify_all()

    def release_all(self) -> None:
        with self._lock:
            for call in self.waiting:
                self._answers[call] = "empty"
            self.waiting.clear()
            self._lock.notify_all()


def test_the_queue_is_drained_after_two_empty_answers_one_polled_after_the_messages(
    events_url: str, sqs: Any
) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("a"))
    gate = _GatedReceives()
    with running_inbox(events_url, queue_url, client_hook=gate.hook, receivers=3) as inbox:
        try:
            first, second, third = gate.wait_for_calls(3)
            gate.answer(first, "queue")  # brings the message
            [received] = collect(inbox, 1)
            fourth = gate.wait_for_calls(3)[-1]  # its receiver polls again
            # Both were waiting when the message came: another took it, which proves nothing.
            gate.answer(second, "empty")
            gate.answer(third, "empty")
            wait_for(lambda: len(gate.waiting) == 3, what="the two receivers polling again")
            assert not inbox.drained()
            gate.answer(fourth, "empty")
            wait_for(inbox.drained, what="the proof", timeout=5)
            inbox.settled(received.todo[0], "done")
        finally:
            gate.release_all()


def test_a_poll_waiting_when_the_messages_came_is_one_of_the_two_empty_answers(
    events_url: str, sqs: Any
) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send(sqs, queue_url, s3_event_body("a"))
    gate = _GatedReceives()
    with running_inbox(events_url, queue_url, client_hook=gate.hook, receivers=2) as inbox:
        try:
            first, second = gate.wait_for_calls(2)
            gate.answer(first, "queue")
            [received] = collect(inbox, 1)
            third = gate.wait_for_calls(2)[-1]
            gate.answer(second, "empty")  # waiting already when the message came
            wait_for(lambda: len(gate.waiting) == 2, what="its receiver polling again")
            assert not inbox.drained()  # one answer is not the proof
            gate.answer(third, "empty")  # polled after the message came
            wait_for(inbox.drained, what="the proof", timeout=5)
            inbox.settled(received.todo[0], "done")
        finally:
            gate.release_all()
