"""A delete whose every attempt failed in a way that may have reached S3 (its answer lost, a
timeout): the run asks S3 whether the object is still there before it reports it, so a run that
ends leaves no object gone from S3 without the audit line that says so. Found by the fault
suite: a run ended with a delete carried out but unanswered six times, no line said so, and
only the next run's recovery wrote it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ReadTimeoutError

from s3drain.config.s3 import S3Settings
from s3drain.drain.settings import DrainSettings
from s3drain.errors import ExitCode
from s3drain.s3.client import S3Client, make_client
from tests.support import moto_aws_like
from tests.support.drainkit import (
    BUCKET,
    PREFIX,
    Answer,
    Call,
    audit_lines,
    bucket_keys,
    drain,
    drain_settings,
    error_response,
    inject,
    is_probe,
    ledger_rows,
    md5,
    mock_aws,
    new_client,
    put_objects,
)

OBJECTS = {f"{PREFIX}d/{n}.csv": f"row {n}\n".encode() * (n + 1) for n in range(5)}


@pytest.fixture(params=["if-match", "etag-batch"])
def s3(request: pytest.FixtureRequest) -> Iterator[S3Client]:
    """Plain moto (single deletes with If-Match) and moto made to honour DeleteObjects'
    per-key ETag (batched deletes)."""
    with mock_aws():
        if request.param == "etag-batch":
            with moto_aws_like.patched():
                yield new_client()
        else:
            yield new_client()


def _side_client() -> S3Client:
    """The same moto, reached without the injector: what the server itself does."""
    return make_client(
        S3Settings(region="us-east-1", access_key_id="testing", secret_access_key="testing")
    )


def _keys_of(operation: str, call: Call) -> list[str]:
    if operation == "DeleteObject":
        path = str(call.params["url_path"]).split("?")[0].lstrip("/")
        return [path.removeprefix(f"{BUCKET}/")]
    body = call.params.get("body", b"")
    text = body.decode() if isinstance(body, bytes) else str(body)
    return re.findall(r"<Key>(.*?)</Key>", text)


def _lost(call: Call) -> ReadTimeoutError:
    return ReadTimeoutError(endpoint_url=f"http://injected{call.url}")


class Deletes:
    """Every delete request is answered with a read timeout, on every attempt. `then` says what
    the server did meanwhile: carried the delete out (`executed`), nothing (`not-executed`),
    or took a newer upload at the key (`overwritten`). With `heads_fail`, the HEADs that ask
    afterwards time out too."""

    def __init__(self, then: str, *, heads_fail: bool = False) -> None:
        self.then = then
        self.heads_fail = heads_fail
        self.side = _side_client()
        self.asked: list[str] = []
        self.touched: set[str] = set()

    def __call__(self, operation: str, call: Call) -> Answer | BaseException | None:
        if operation in ("DeleteObject", "DeleteObjects") and not is_probe(call):
            for key in _keys_of(operation, call):
                if key in self.touched:
                    continue  # the server acts on the first attempt; the rest are too late
                self.touched.add(key)
                if self.then == "executed":
                    self.side.delete_object(Bucket=BUCKET, Key=key)
                elif self.then == "overwritten":
                    self.side.put_object(Bucket=BUCKET, Key=key, Body=b"a newer upload")
            return _lost(call)
        if operation == "HeadObject" and not is_probe(call):
            self.asked.append(str(call.params["url_path"]))
            if self.heads_fail:
                return _lost(call)
        return None


def _lines(settings: DrainSettings) -> dict[str, dict[str, object]]:
    return {line["key"]: line for line in audit_lines(settings)}


def test_a_delete_carried_out_whose_answers_were_lost_is_recorded_deleted(
    tmp_path: Path, s3: S3Client
) -> None:
    put_objects(s3, OBJECTS)
    settings = drain_settings(tmp_path)
    rule = Deletes("executed")
    inject(s3, rule)

    run = drain(settings, s3)

    assert run.code == ExitCode.OK, run.err
    assert bucket_keys(s3) == set()
    lines = _lines(settings)
    assert set(lines) == set(OBJECTS)
    for key, line in lines.items():
        assert line["deleted"] is True, line
        assert "S3 no longer holds it" in str(line["detail"]), line
        assert (settings.raw_dir / key[len(PREFIX) :]).read_bytes() == OBJECTS[key]
    assert len(rule.asked) == len(OBJECTS), rule.asked
    states = {row["key"]: row["delete_state"] for row in ledger_rows(settings)}
    assert states == dict.fromkeys(OBJECTS, "deleted")


def test_a_delete_never_carried_out_is_reported_failed_and_drained_next_time(
    tmp_path: Path, s3: S3Client
) -> None:
    put_objects(s3, OBJECTS)
    settings = drain_settings(tmp_path)
    inject(s3, Deletes("not-executed"))

    first = drain(settings, s3)

    assert first.code == ExitCode.PARTIAL, first.err
    assert bucket_keys(s3) == set(OBJECTS)
    for line in _lines(settings).values():
        assert line["deleted"] is False and line["status"] == "failed", line
        assert "the object is still in S3" in str(line["detail"]), line

    second = drain(settings, new_client_without_hooks())

    assert second.code == ExitCode.OK, second.err
    assert bucket_keys(s3) == set()
    claims = [line for line in audit_lines(settings) if line["deleted"]]
    assert sorted(str(line["key"]) for line in claims) == sorted(OBJECTS)


def test_an_upload_during_an_unanswered_delete_is_changed_and_stays(
    tmp_path: Path, s3: S3Client
) -> None:
    put_objects(s3, OBJECTS)
    settings = drain_settings(tmp_path)
    inject(s3, Deletes("overwritten"))

    run = drain(settings, s3)

    assert run.code == ExitCode.PARTIAL, run.err
    for key, line in _lines(settings).items():
        assert line["etag"] == md5(OBJECTS[key]), line
        assert line["status"] == "changed" and line["deleted"] is False, line
        assert "left S3 while its delete was in flight" in str(line["detail"]), line
    side = new_client_without_hooks()
    for key in OBJECTS:
        assert side.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"a newer upload"


def test_when_s3_cannot_say_the_delete_stays_unconfirmed_and_the_next_run_records_it(
    tmp_path: Path, s3: S3Client
) -> None:
    put_objects(s3, OBJECTS)
    settings = drain_settings(tmp_path)
    inject(s3, Deletes("executed", heads_fail=True))

    first = drain(settings, s3)

    assert first.code == ExitCode.PARTIAL, first.err
    assert bucket_keys(s3) == set()
    for line in _lines(settings).values():
        assert line["deleted"] is False, line
        assert "delete unconfirmed" in str(line["detail"]), line
        assert "the next run asks S3" in str(line["detail"]), line
    states = {row["key"]: row["delete_state"] for row in ledger_rows(settings)}
    assert states == dict.fromkeys(OBJECTS, "sending"), "the ledger keeps them in flight"

    second = drain(settings, new_client_without_hooks())

    assert second.code == ExitCode.OK, second.err
    assert f"{len(OBJECTS)} delete(s) an interrupted run had sent recorded" in second.err
    claims = {str(line["key"]) for line in audit_lines(settings) if line["deleted"]}
    assert claims == set(OBJECTS)


def test_a_refused_delete_asks_nothing(tmp_path: Path, s3: S3Client) -> None:
    """A 403 was not carried out: no HEAD, the run stops with the permission it needs."""
    put_objects(s3, OBJECTS)
    settings = drain_settings(tmp_path)
    heads: list[str] = []

    def rule(operation: str, call: Call) -> Answer | BaseException | None:
        if operation in ("DeleteObject", "DeleteObjects") and not is_probe(call):
            return error_response(403, "AccessDenied")
        if operation == "HeadObject":
            heads.append(call.url)
        return None

    inject(s3, rule)
    run = drain(settings, s3)

    assert run.code == ExitCode.USAGE, run.err
    assert "AccessDenied" in run.err
    assert heads == []
    assert bucket_keys(s3) == set(OBJECTS)


def new_client_without_hooks() -> S3Client:
    return _side_client()
