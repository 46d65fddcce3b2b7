"""events/admission.py: what a received message means for the inbox, before anything is held."""

from __future__ import annotations

import json

from s3drain.events.admission import Admission, Admitter
from s3drain.events.messages import parse_message
from tests.support.eventkit import s3_event_body


def _records(*specs: tuple[str, str, str]) -> str:
    """(bucket, key, eventName) each."""
    records = [
        json.loads(s3_event_body(key, bucket=bucket))["Records"][0] | {"eventName": name}
        for bucket, key, name in specs
    ]
    return json.dumps({"Records": records})


def admit(admitter: Admitter, message_id: str, body: str) -> Admission:
    return admitter.admit(message_id, parse_message(body))


def test_a_bad_message_is_noted_and_counted_once_per_message_id() -> None:
    admitter = Admitter("lake", "in/")
    first = admit(admitter, "m1", "not JSON")
    again = admit(admitter, "m1", "not JSON")
    other = admit(admitter, "m2", "{}")
    assert first.kind == again.kind == other.kind == "bad"
    assert first.counts == {"bad": 1} and [k for k, _ in first.notes] == ["bad"]
    assert "not JSON" in first.notes[0][1]
    assert again.counts == {} and again.notes == ()
    assert other.counts == {"bad": 1}


def test_a_test_event_is_noted_and_has_nothing_to_drain() -> None:
    body = json.dumps(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "lake", "Time": "x"}
    )
    admission = admit(Admitter("lake", ""), "m", body)
    assert admission.kind == "test" and admission.to_drain == ()
    assert admission.counts == {"test_events": 1}
    assert admission.notes == (("test", "s3:TestEvent for bucket lake"),)


def test_only_created_objects_in_scope_are_to_drain_and_the_rest_of_the_scope_is_ignored() -> None:
    body = _records(
        ("lake", "in/a.csv", "ObjectCreated:Put"),
        ("lake", "in/b.csv", "ObjectRemoved:Delete"),
        ("lake", "out/c.csv", "ObjectCreated:Put"),
        ("other", "in/d.csv", "ObjectCreated:Put"),
    )
    admission = admit(Admitter("lake", "in/"), "m", body)
    assert admission.kind == "events"
    assert len(admission.events) == 4
    assert [e.key for e in admission.to_drain] == ["in/a.csv"]
    assert admission.counts == {"ignored": 2}
    assert [detail for _, detail in admission.notes] == [
        "created s3://lake/out/c.csv: not under s3://lake/in/",
        "created s3://other/in/d.csv: not under s3://lake/in/",
    ]
