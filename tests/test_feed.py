"""A run fed its objects from outside (drain/source.py: how `s3drain watch` hands S3's events to
the pipeline), against moto's HTTP server with the run's own client (direct GETs, fetch
processes): every object gets its one outcome through `settled`, filtered ones through
`passed_over`, and an object no listing dated is dated by S3 itself - by its GET, or by a HEAD
where the ledger or a local file could decide it without one - so a delivery of these bytes is
never taken for a new upload of the same bytes, nor the other way round."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from dataclasses import replace
from pathlib import Path

from s3drain.drain.filters import compile_rule
from s3drain.drain.run import run_drain
from s3drain.drain.settings import DrainSettings
from s3drain.drain.source import Feed, Pages
from s3drain.records import UNKNOWN_TIME, ObjectRecord, Outcome, Status
from s3drain.s3.client import S3Client as TypedClient
from s3drain.s3.retry import RetryPolicy
from tests.support.drainkit import BUCKET, PREFIX, drain_settings, ledger_rows
from tests.support.server import S3Client


def _settings(base: Path, url: str) -> DrainSettings:
    return drain_settings(base, endpoint_url=url, addressing_style="path", workers=8)


def _undated(s3: S3Client, key: str) -> ObjectRecord:
    """What an ObjectCreated event tells: key, size, ETag; no LastModified."""
    head = s3.head_object(Bucket=BUCKET, Key=key)
    return ObjectRecord(key, int(head["ContentLength"]), head["ETag"].strip('"'), UNKNOWN_TIME)


def _feed(records: list[ObjectRecord], settled: list[Outcome], **more: object) -> Feed:
    def pages(
        client: TypedClient, retry: RetryPolicy, stop: threading.Event, call: object
    ) -> Pages:
        yield records

    return Feed(pages, settled=settled.append, **more)  # type: ignore[arg-type]


def _run(settings: DrainSettings, feed: Feed) -> int:
    result = run_drain(settings, out=io.StringIO(), err=io.StringIO(), feed=feed)
    return int(result.exit_code)


def test_fed_objects_are_drained_and_each_is_settled_once(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    bodies = {f"{PREFIX}f{i:03d}.csv": f"row {i}\n".encode() * 50 for i in range(40)}
    for key, body in bodies.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}skip.tmp", Body=b"not this")
    settled: list[Outcome] = []
    passed: list[tuple[str, str]] = []
    records = [_undated(s3, k) for k in bodies] + [_undated(s3, f"{PREFIX}skip.tmp")]
    settings = replace(_settings(tmp_path, s3_url), rules=(compile_rule("*.tmp", include=False),))
    feed = _feed(records, settled, passed_over=lambda r, why: passed.append((r.key, why)))
    assert _run(settings, feed) == 0
    assert sorted(o.record.key for o in settled) == sorted(bodies)
    assert all(o.status is Status.DOWNLOADED and o.deleted for o in settled)
    assert [k for k, _ in passed] == [f"{PREFIX}skip.tmp"]
    for key, body in bodies.items():
        assert (tmp_path / "raw" / key[len(PREFIX) :]).read_bytes() == body
    # The ledger dates each delivery as a listing would have: from the GET's answer.
    rows = ledger_rows(settings)
    assert len(rows) == len(bodies) and all(row["last_modified"] for row in rows)


def test_a_delivered_object_still_in_s3_is_dated_and_recognised(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    """The object was delivered and its delete failed; the ETL has since taken the file away.
    A second event for it must not deliver it twice."""
    s3.create_bucket(Bucket=BUCKET)
    key, body = f"{PREFIX}once.csv", b"deliver me once"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    settings = _settings(tmp_path, s3_url)
    settled: list[Outcome] = []
    no_delete = replace(settings, no_delete=True)
    assert _run(no_delete, _feed([_undated(s3, key)], settled)) == 0
    (tmp_path / "raw" / "once.csv").unlink()  # the ETL consumed it
    settled.clear()
    assert _run(settings, _feed([_undated(s3, key)], settled)) == 0
    (outcome,) = settled
    assert outcome.status is Status.PROCESSED and outcome.deleted
    assert not (tmp_path / "raw" / "once.csv").exists()


def test_the_same_bytes_uploaded_again_are_a_new_object(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    key, body = f"{PREFIX}daily.csv", b"the same every day"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    settings = _settings(tmp_path, s3_url)
    settled: list[Outcome] = []
    assert _run(settings, _feed([_undated(s3, key)], settled)) == 0
    (tmp_path / "raw" / "daily.csv").unlink()  # the ETL consumed yesterday's
    time.sleep(1.1)  # S3 dates objects to the second
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    settled.clear()
    assert _run(settings, _feed([_undated(s3, key)], settled)) == 0
    (outcome,) = settled
    assert outcome.status is Status.DOWNLOADED and outcome.deleted
    assert (tmp_path / "raw" / "daily.csv").read_bytes() == body


def test_an_object_changed_or_gone_since_its_event_is_left_to_its_own_event(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}changed.csv", Body=b"first")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}gone.csv", Body=b"short-lived")
    records = [_undated(s3, f"{PREFIX}changed.csv"), _undated(s3, f"{PREFIX}gone.csv")]
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}changed.csv", Body=b"second, longer")
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}gone.csv")
    settled: list[Outcome] = []
    assert _run(_settings(tmp_path, s3_url), _feed(records, settled)) == 1
    assert sorted((o.record.key, o.status) for o in settled) == [
        (f"{PREFIX}changed.csv", Status.CHANGED),
        (f"{PREFIX}gone.csv", Status.CHANGED),
    ]
    newer = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}changed.csv")["Body"].read()
    assert newer == b"second, longer"
    assert not (tmp_path / "raw" / "changed.csv").exists()


def test_a_local_copy_of_an_undated_object_is_dated_before_it_counts(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    """The bytes are already at raw/ (a crash between the link and the delete): `present`,
    with the object's real LastModified in the ledger (a HEAD asked for it)."""
    s3.create_bucket(Bucket=BUCKET)
    key, body = f"{PREFIX}here.csv", b"already here"
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    (tmp_path / "raw").mkdir(parents=True)
    (tmp_path / "raw" / "here.csv").write_bytes(body)
    settings = _settings(tmp_path, s3_url)
    settled: list[Outcome] = []
    assert _run(settings, _feed([_undated(s3, key)], settled)) == 0
    (outcome,) = settled
    assert outcome.status is Status.PRESENT and outcome.deleted
    (row,) = ledger_rows(settings)
    assert row["last_modified"]  # dated, not "unknown"
    assert hashlib.md5(body).hexdigest() == row["etag"]
