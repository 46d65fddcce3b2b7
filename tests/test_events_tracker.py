"""events/tracker.py, pure: which messages wait for which objects, and their verdicts."""

from __future__ import annotations

from s3drain.events.messages import ObjectEvent
from s3drain.events.tracker import AfterRelease, Message, ObjectRef, Tracker


def message(message_id: str, handle: str = "h1", sent_at: float | None = 100.0) -> Message:
    return Message(message_id, handle, "{}", sent_at, 1, 0.0)


def event(key: str, etag: str = "e1", sequencer: str | None = "01") -> ObjectEvent:
    return ObjectEvent(
        "lake", key, "created", "ObjectCreated:Put", "s3", etag=etag, sequencer=sequencer
    )


def test_one_message_one_object() -> None:
    tracker = Tracker()
    admitted = tracker.add(message("m1"), [event("k")], visible_until=30)
    ref = ObjectRef("lake", "k", "e1", None, "01")
    assert (admitted.todo, admitted.verdict, admitted.again) == ((ref,), None, False)
    assert tracker.unfinished() == [message("m1")]
    assert tracker.settle(ref, "done") == [(message("m1"), "delete")]
    assert tracker.unfinished() == []
    assert tracker.forget("m1") == message("m1")
    assert len(tracker) == 0 and tracker.pending_refs() == 0


def test_duplicates_across_messages_share_one_drain_and_one_settlement() -> None:
    tracker = Tracker()
    first = tracker.add(message("m1"), [event("k")], 30)
    second = tracker.add(message("m2"), [event("k")], 30)
    assert len(first.todo) == 1
    assert second.todo == ()
    finished = tracker.settle(first.todo[0], "done")
    assert sorted(m.message_id for m, _ in finished) == ["m1", "m2"]
    assert {verdict for _, verdict in finished} == {"delete"}


def test_a_newer_version_is_another_object() -> None:
    tracker = Tracker()
    old = tracker.add(message("m1"), [event("k", etag="old", sequencer="0A")], 30)
    new = tracker.add(message("m2"), [event("k", etag="new", sequencer="0B")], 30)
    assert len(old.todo) == len(new.todo) == 1
    assert tracker.settle(old.todo[0], "done") == [(message("m1"), "delete")]
    assert tracker.unfinished() == [message("m2")]


def test_a_message_waits_for_all_it_names_and_any_failure_leaves_it() -> None:
    tracker = Tracker()
    admitted = tracker.add(message("m1"), [event("a"), event("b"), event("a")], 30)
    assert len(admitted.todo) == 2  # "a" named twice in one message: drained once
    a, b = admitted.todo
    assert tracker.settle(a, "retry") == []
    assert tracker.settle(b, "done") == [(message("m1"), "leave")]
    assert tracker.due(before=1e9) == []  # a left message gets no more heartbeats


def test_a_message_with_nothing_to_drain_is_deletable_at_once() -> None:
    tracker = Tracker()
    admitted = tracker.add(message("m1"), [], 30)
    assert (admitted.todo, admitted.verdict) == ((), "delete")
    assert tracker.unfinished() == []  # on its way out: a stop does not release it


def test_a_message_received_again_keeps_its_waits_and_takes_the_new_handle() -> None:
    tracker = Tracker()
    tracker.add(message("m1", "old-handle"), [event("k")], 30)
    again = tracker.add(message("m1", "new-handle"), [event("k")], 60)
    assert (again.todo, again.again) == ((), True)
    current = tracker.message("m1")
    assert current is not None and current.receipt_handle == "new-handle"
    [(finished, _)] = tracker.settle(ObjectRef("lake", "k", "e1", None, "01"), "done")
    assert finished.receipt_handle == "new-handle"


def test_settling_an_unknown_or_forgotten_ref_does_nothing() -> None:
    tracker = Tracker()
    admitted = tracker.add(message("m1"), [event("k")], 30)
    assert tracker.settle(ObjectRef("lake", "other"), "done") == []
    tracker.forget("m1")
    assert tracker.settle(admitted.todo[0], "done") == []
    assert tracker.forget("m1") is None


def test_a_forgotten_message_frees_the_object_for_the_next_one() -> None:
    tracker = Tracker()
    tracker.add(message("m1"), [event("k")], 30)
    tracker.forget("m1")  # released at a stop
    assert len(tracker.add(message("m2"), [event("k")], 30).todo) == 1


def test_due_and_extended() -> None:
    tracker = Tracker()
    tracker.add(message("m1"), [event("a")], visible_until=10)
    tracker.add(message("m2"), [event("b")], visible_until=50)
    assert [m.message_id for m in tracker.due(before=20)] == ["m1"]
    tracker.extended("m1", 70)
    assert tracker.due(before=20) == []
    assert sorted(m.message_id for m in tracker.due(before=60)) == ["m2"]


def test_oldest_sent() -> None:
    tracker = Tracker()
    assert tracker.oldest_sent() is None
    tracker.add(message("m1", sent_at=None), [event("a")], 30)
    assert tracker.oldest_sent() is None
    tracker.add(message("m2", sent_at=200.0), [event("b")], 30)
    tracker.add(message("m3", sent_at=150.0), [event("c")], 30)
    assert tracker.oldest_sent() == 150.0


def test_after_a_release_a_message_is_deleted_only_when_all_it_named_is_done() -> None:
    a, b, c = ObjectRef("lake", "a", "e1"), ObjectRef("lake", "b", "e1"), ObjectRef("lake", "c")
    after = AfterRelease()
    after.remember(message("two"), [a, b])
    after.remember(message("failed"), [c])
    after.remember(message("nothing"), [])  # waits for nothing in hand: not remembered
    after.received_again(message("two", handle="h2"))
    assert after.settle(a, "done") == []  # b still in hand
    assert after.settle(c, "retry") == []  # failed or cut short: stays released
    assert after.settle(c, "done") == []
    assert after.settle(b, "done") == ["two"]
    assert after.take("two") == message("two", handle="h2")  # the newest handle
    assert after.settle(b, "done") == []  # once
    assert after.take("two") is None


def test_after_a_release_a_message_held_anew_is_left_to_its_new_hold() -> None:
    a = ObjectRef("lake", "a", "e1")
    after = AfterRelease()
    after.remember(message("m"), [a])
    after.taken_again("m")
    assert after.settle(a, "done") == []
