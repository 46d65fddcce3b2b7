"""The run <-> fetch process messages (drain/fetch_wire.py): every field survives the trip,
across a real socketpair, descriptor included."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from s3drain.drain.direct_fetch import Done, Failed, Job
from s3drain.drain.fetch_wire import (
    Setup,
    job_message,
    read_job,
    read_result,
    read_setup,
    receive,
    result_message,
    send,
    setup_message,
)
from s3drain.drain.verify import Verified
from s3drain.records import FileId, ObjectRecord
from s3drain.s3.direct import Endpoint
from s3drain.s3.sigv4 import Credentials


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


@pytest.mark.parametrize("token", [None, "tok/en+=="])
@pytest.mark.parametrize("version", [None, "v3/L4kqt+Jl40"])
def test_a_job_arrives_as_it_was_sent(token: str | None, version: str | None) -> None:
    record = ObjectRecord(
        "ünï code/a b+c%25\x7f", 12345, "0123abcd" * 4, datetime.now(UTC), version
    )
    job = Job(7, record, "/base/raw/ünï code/.s3drain-0123.part", Credentials("AK", "SK", token))
    ours, theirs = _pair()
    send(ours, job_message(job))
    received = receive(theirs)
    assert received is not None
    got = read_job(received[0])
    assert (got.id, got.temp, got.credentials) == (job.id, job.temp, job.credentials)
    assert (got.record.key, got.record.size, got.record.etag, got.record.version_id) == (
        record.key,
        record.size,
        record.etag,
        record.version_id,
    )


def test_setup_and_answers_round_trip_and_a_descriptor_rides_along(tmp_path: Path) -> None:
    setup = Setup(
        Endpoint(
            "https",
            "b.s3.amazonaws.com",
            443,
            "b.s3.amazonaws.com",
            "",
            "eu-west-1",
            "/ca.pem",
            True,
            1.5,
            30.0,
        ),
        9,
    )
    assert read_setup(setup_message(setup)) == setup
    done = Done(1, Verified("crc64nvme", "crc64nvme:AAAAAAAAAAA=", None), FileId(1, 2, 3, 4), 1)
    failed = Failed(2, "http", "Access Denied", 1, 403, "AccessDenied", 0, None)
    local = Failed(3, "local", "No space left on device", 0, errno=28, filename="/x/y")
    dated = Done(
        4,
        Verified("md5", "md5:00", "v1", datetime(2026, 12, 4, 3, 5, 1, tzinfo=UTC)),
        FileId(1, 2, 3, 4),
        1,
    )
    for result in (done, dated, failed, local):
        assert read_result(result_message(result)) == result
    (tmp_path / "f").write_bytes(b"bytes")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    ours, theirs = _pair()
    send(ours, result_message(done), fd)
    os.close(fd)  # the receiver's copy keeps the file open
    received = receive(theirs)
    assert received is not None
    message, fds = received
    assert read_result(message) == done and len(fds) == 1
    assert os.pread(fds[0], 10, 0) == b"bytes"
    os.close(fds[0])


def test_the_end_of_the_other_side_and_foreign_messages() -> None:
    ours, theirs = _pair()
    ours.close()
    assert receive(theirs) is None
    assert read_result(("ready",)) is None
    with pytest.raises(ValueError, match="setup"):
        read_setup(("job", 1))
