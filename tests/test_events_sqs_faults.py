"""The inbox when SQS misbehaves: a batch entry that fails (for good, or once), a receipt
handle gone stale, SQS unreachable for a few seconds and for good, a permission missing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from s3drain.errors import AbortError, ConfigError, ExitCode
from tests.support.eventkit import (
    Notes,
    collect,
    deny,
    depth,
    make_queue,
    running_inbox,
    s3_event_body,
    sqs_client,
    wait_for,
)
from tests.support.proxy import FaultProxy


@pytest.fixture
def sqs(s3_url: str) -> Any:
    client = sqs_client(s3_url)
    yield client
    client.close()


def send_events(sqs: Any, queue_url: str, *keys: str) -> None:
    for key in keys:
        sqs.send_message(QueueUrl=queue_url, MessageBody=s3_event_body(key))


def test_a_delete_entry_that_fails_is_counted_and_its_message_stays(s3_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send_events(sqs, queue_url, "a", "b")

    def corrupt_b(client: Any) -> None:
        def handler(params: dict[str, Any], **_: Any) -> None:
            for entry in params["Entries"]:
                if entry["ReceiptHandle"] == handles["b"]:
                    entry["ReceiptHandle"] = "not-a-receipt-handle"

        client.meta.events.register("before-parameter-build.sqs.DeleteMessageBatch", handler)

    handles: dict[str, str] = {}
    notes = Notes()
    with running_inbox(s3_url, queue_url, client_hook=corrupt_b, notes=notes) as inbox:
        found = collect(inbox, 2)
        refs = {r.todo[0].key: r for r in found}
        handles["b"] = refs["b"].message.receipt_handle
        for r in found:
            inbox.settled(r.todo[0], "done")
        wait_for(lambda: inbox.counters().delete_failed == 1, what="the failed entry")
        counters = inbox.counters()
        assert (counters.deleted, counters.delete_failed, counters.in_flight) == (1, 1, 0)
        [note] = [n for n in notes.items if n.kind == "delete-failed"]
        assert note.message_id == refs["b"].message.message_id
        assert "ReceiptHandleIsInvalid" in note.detail
    assert depth(sqs, queue_url) == 1  # b is still there, to come back


def test_a_delete_entry_that_fails_transiently_is_sent_again(s3_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    send_events(sqs, queue_url, "a", "b")
    calls: list[int] = []
    held_back: list[str] = []

    def flaky(client: Any) -> None:
        def before(params: dict[str, Any], **_: Any) -> None:
            calls.append(len(params["Entries"]))
            if len(calls) == 1:  # the first batch: keep one entry from the server
                held_back.append(params["Entries"].pop(0)["Id"])

        def after(parsed: dict[str, Any], **_: Any) -> None:
            if len(calls) == 1:
                parsed.setdefault("Failed", []).append(
                    {"Id": held_back[0], "Code": "InternalError", "SenderFault": False}
                )

        client.meta.events.register("before-parameter-build.sqs.DeleteMessageBatch", before)
        client.meta.events.register("after-call.sqs.DeleteMessageBatch", after)

    with running_inbox(s3_url, queue_url, client_hook=flaky) as inbox:
        found = collect(inbox, 2)
        for r in found:
            inbox.settled(r.todo[0], "done")
        wait_for(lambda: inbox.counters().deleted == 2, what="both deletes")
        assert inbox.counters().delete_failed == 0
    assert len(calls) >= 2  # the held-back entry went out again
    assert depth(sqs, queue_url) == 0


@pytest.mark.parametrize("server", ["moto", "localstack"])
def test_a_receipt_handle_gone_stale(server: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("s3_url" if server == "moto" else "events_localstack_url")
    other = sqs_client(url)
    queue_url, _ = make_queue(other, "q")
    send_events(other, queue_url, "slow")
    notes = Notes()
    # No beat of its own (an hour apart) and no room to receive more: its 1 s visibility runs
    # out and another consumer gets it.
    with running_inbox(
        url,
        queue_url,
        visibility_timeout=1,
        heartbeat_every=3600,
        receivers=1,
        max_in_flight=1,
        notes=notes,
    ) as inbox:
        [received] = collect(inbox, 1)
        time.sleep(1.5)
        # Another consumer takes it and finishes it: our receipt handle now names nothing.
        taken = other.receive_message(QueueUrl=queue_url, VisibilityTimeout=30, WaitTimeSeconds=2)
        [message] = taken["Messages"]
        other.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        inbox.extend_due()
        counters = inbox.counters()
        assert counters.visibility_lost == 1
        assert [n.kind for n in notes.items] == ["visibility-lost"]
        assert counters.in_flight == 1  # still held: settling it is what lets it go
        inbox.extend_due()
        assert inbox.counters().visibility_lost == 1  # no beats for it any more
        inbox.settled(received.todo[0], "done")
        wait_for(lambda: inbox.counters().in_flight == 0, what="the message to leave")
        assert inbox.failure is None
    other.close()


def test_sqs_gone_for_three_seconds_is_ridden_out(s3_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    with (
        FaultProxy(s3_url) as proxy,
        running_inbox(s3_url, queue_url, sqs_url=proxy.url, breaker_window=10.0) as inbox,
    ):
        send_events(sqs, queue_url, "before")
        [first] = collect(inbox, 1)
        proxy.configure(fault_rate=1.0, fault_kinds=("reset_before",))
        inbox.settled(first.todo[0], "done")  # its delete meets the outage
        time.sleep(3)
        proxy.configure(fault_rate=0.0)
        send_events(sqs, queue_url, "after")
        [second] = collect(inbox, 1, timeout=20)
        assert second.todo[0].key == "after"
        inbox.settled(second.todo[0], "done")
        wait_for(lambda: depth(sqs, queue_url) == 0, timeout=20, what="both deletes")
        assert inbox.failure is None
        assert proxy.fault_counts().get("reset_before", 0) > 0


def test_sqs_gone_for_good_ends_with_exit_5(s3_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    proxy = FaultProxy(s3_url).start()
    with running_inbox(s3_url, queue_url, sqs_url=proxy.url, breaker_window=1.5) as inbox:
        assert inbox.receive(timeout=1.5) == []
        proxy.stop()  # connection refused from now on
        started = time.monotonic()
        with pytest.raises(AbortError) as raised:
            while time.monotonic() - started < 30:
                inbox.receive(timeout=0.5)
        assert raised.value.exit_code == ExitCode.ABORTED
        assert raised.value.message.startswith("SQS unreachable since")
        assert "come back to the queue" in raised.value.message
        assert time.monotonic() - started < 15


def test_receive_denied_is_one_clear_configuration_error(s3_url: str, sqs: Any) -> None:
    queue_url, _ = make_queue(sqs, "q")
    with running_inbox(
        s3_url, queue_url, client_hook=lambda c: deny(c, "sqs", "ReceiveMessage")
    ) as inbox:
        with pytest.raises(ConfigError) as raised:
            for _ in range(20):
                inbox.receive(timeout=0.5)
        assert raised.value.exit_code == ExitCode.USAGE
        assert "sqs:ReceiveMessage" in raised.value.message


def test_a_queue_that_does_not_exist_says_so(s3_url: str) -> None:
    missing = f"{s3_url}/123456789012/no-such-queue"
    with running_inbox(s3_url, missing) as inbox, pytest.raises(ConfigError) as raised:
        for _ in range(20):
            inbox.receive(timeout=0.5)
    assert "does not exist" in raised.value.message
    assert "--queue-url" in raised.value.message
