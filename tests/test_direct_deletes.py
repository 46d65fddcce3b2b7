"""DeleteObjects sent directly (s3/delete_xml.py, s3/delete_form.py, drain/direct_deletes.py):
its body is botocore's byte for byte, on every server of the suite its answers are botocore's
for the same deletes (hostile keys, right and wrong ETags), S3's errors and answers that are
not a result fail as botocore's would (or louder), and anything botocore would send
differently stays with botocore."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from s3drain.drain.direct_deletes import DirectDeletes, UnreadableDeletes
from s3drain.drain.direct_switch import DirectSwitch
from s3drain.s3 import delete_form as delete_form_module  # its body builder, replaced
from s3drain.s3.client import RequestCounter, make_client
from s3drain.s3.delete_form import DeleteForm, _dry_delete, delete_form
from s3drain.s3.delete_xml import ErrorDocument, delete_body, parse_delete_result
from s3drain.s3.direct import Connection, HttpFailure
from s3drain.s3.direct_target import DirectTarget, direct_target
from s3drain.s3.sigv4 import Credentials
from s3drain.s3.xml_answer import UnreadableAnswer
from tests.support.endpoints import S3Endpoint
from tests.test_direct import HOSTILE_KEYS, _settings

BUCKET = "deletes"
KEYS = [*HOSTILE_KEYS, "cr\rkey", "tab\tkey", "amp &amp; <lt> \"q\" 'a'", "ü/日本/файл"]


def _target(url: str, bucket: str = BUCKET) -> DirectTarget:
    learned = direct_target(make_client(_settings(url)), bucket, _settings(url))
    assert learned is not None
    return learned


def _deletes(
    url: str,
    *,
    bucket: str = BUCKET,
    warned: list[str] | None = None,
    counter: RequestCounter | None = None,
    learn: Callable[[], DeleteForm | None] | None = None,
) -> DirectDeletes:
    target = _target(url, bucket)
    client = make_client(_settings(url))

    def learned() -> DeleteForm | None:
        return delete_form(client, bucket, Connection(target.endpoint), target.credentials())

    return DirectDeletes(
        target.endpoint,
        bucket,
        learn or learned,
        credentials=target.credentials,
        client=client,
        switch=DirectSwitch((warned if warned is not None else []).append),
        count=(counter or RequestCounter()).add,
        endpoint_url=url,
    )


def _botocore_body(url: str, objects: list[dict[str, str]]) -> bytes:
    dry = _dry_delete(make_client(_settings(url)), BUCKET, objects)
    assert dry is not None
    return dry[2]


def test_the_body_is_botocores_byte_for_byte(s3_url: str) -> None:
    objects = [{"Key": k, "ETag": f'"{n:032x}"'} for n, k in enumerate(KEYS)]
    objects += [{"Key": k, "VersionId": f"v{n}+/="} for n, k in enumerate(KEYS)]
    objects += [{"Key": k} for k in KEYS]
    assert delete_body(objects, quiet=False) == _botocore_body(s3_url, objects)


def test_the_form_is_learned_only_where_botocore_is_reproduced(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(_settings(s3_url))
    target = _target(s3_url)
    conn = Connection(target.endpoint)
    form = delete_form(client, BUCKET, conn, target.credentials())
    assert form is not None
    assert set(form.checksums) <= {
        "x-amz-checksum-crc32",
        "x-amz-sdk-checksum-algorithm",
        "content-md5",
    }
    wrong = Credentials("testing", "another secret")
    assert delete_form(client, BUCKET, conn, wrong) is None  # another signature
    assert delete_form(client, "other-bucket", conn, target.credentials()) is None  # another URL
    real = delete_form_module._dry_delete

    def with_extra_header(*args: Any) -> Any:
        seen = real(*args)
        assert seen is not None
        url, headers, body = seen
        return url, {**headers, "content-md5": "unsigned, and not sent directly"}, body

    monkeypatch.setattr(delete_form_module, "_dry_delete", with_extra_header)
    assert delete_form(client, BUCKET, conn, target.credentials()) is None  # another header
    monkeypatch.setattr(delete_form_module, "_dry_delete", real)
    monkeypatch.setattr(delete_form_module, "delete_body", lambda *_, **__: b"<Delete/>")
    assert delete_form(client, BUCKET, conn, target.credentials()) is None  # another body


def _fill(client: Any, prefix: str) -> dict[str, str]:
    etags = {}
    for n, key in enumerate(KEYS):
        etags[prefix + key] = client.put_object(Bucket=BUCKET, Key=prefix + key, Body=b"x" * n)[
            "ETag"
        ]
    return etags


def _batch(etags: dict[str, str]) -> dict[str, Any]:
    objects = []
    for n, (key, etag) in enumerate(sorted(etags.items())):
        # Every third with an ETag that is not the object's: a server that honours the
        # per-key ETag keeps it and says so.
        objects.append(
            {"Key": key, "ETag": etag if n % 3 else '"0123456789abcdef0123456789abcdef"'}
        )
    return {"Bucket": BUCKET, "Delete": {"Objects": objects, "Quiet": False}}


def _summary(answer: dict[str, Any], prefix: str) -> tuple[list[str], list[tuple[str, str]]]:
    deleted = sorted(d["Key"][len(prefix) :] for d in answer.get("Deleted", []))
    errors = sorted((e["Key"][len(prefix) :], e.get("Code", "")) for e in answer.get("Errors", []))
    return deleted, errors


def test_direct_deletes_answer_as_botocore_does_on_every_server(s3_endpoint: S3Endpoint) -> None:
    s3 = s3_endpoint.client()
    s3.create_bucket(Bucket=BUCKET)
    by_botocore, direct = _fill(s3, "b/"), _fill(s3, "d/")
    counter = RequestCounter()
    deletes = _deletes(s3_endpoint.url, counter=counter)
    theirs = dict(make_client(_settings(s3_endpoint.url)).delete_objects(**_batch(by_botocore)))
    ours = deletes(**_batch(direct))
    assert deletes._form is not None  # it did go direct
    assert _summary(ours, "d/") == _summary(theirs, "b/")
    if s3_endpoint.name == "moto-aws-like":  # honours the per-key ETag: every third kept
        assert len(_summary(ours, "d/")[1]) == -(-len(KEYS) // 3)
    assert counter.snapshot().get("DeleteObjects") == 1
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert sorted(k[2:] for k in left if k.startswith("d/")) == sorted(
        k[2:] for k in left if k.startswith("b/")
    )
    deletes.close()


def test_s3s_errors_are_botocores_exceptions_for_deleteobjects(s3_url: str, s3: Any) -> None:
    s3.create_bucket(Bucket=BUCKET)
    deletes = _deletes(s3_url)
    s3.delete_bucket(Bucket=BUCKET)  # learned for a bucket that is gone by the first delete
    with pytest.raises(ClientError) as raised:
        deletes(Bucket=BUCKET, Delete={"Objects": [{"Key": "k"}], "Quiet": False})
    assert raised.value.response["Error"]["Code"] == "NoSuchBucket"
    assert raised.value.operation_name == "DeleteObjects"


def _broken(answer: bytes) -> Callable[..., bytes]:
    def send(*_: object, **__: object) -> bytes:
        return answer

    return send


def test_an_error_document_or_an_unreadable_answer_fails_as_botocore_errors_do(
    s3_url: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    deletes = _deletes(s3_url)
    params = {"Bucket": BUCKET, "Delete": {"Objects": [{"Key": "k"}], "Quiet": False}}
    deletes(**params)  # learns the form, opens this thread's connection
    conn = deletes._conns.mine()
    error = b"<Error><Code>InternalError</Code><Message>try again</Message></Error>"
    monkeypatch.setattr(conn, "delete_objects", _broken(error))
    with pytest.raises(ClientError) as raised:
        deletes(**params)
    assert raised.value.response["Error"]["Code"] == "InternalError"  # retryable
    for body in (
        b"<html/>",
        b"no xml",
        b"<DeleteResult><Deleted><VersionId>v</VersionId></Deleted></DeleteResult>",
    ):
        monkeypatch.setattr(conn, "delete_objects", _broken(body))
        with pytest.raises(UnreadableDeletes) as unreadable:
            deletes(**params)
        assert isinstance(unreadable.value, BotoCoreError)  # each object is then asked about


def test_what_botocore_would_send_differently_stays_with_botocore(
    s3_url: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="other")
    asked: list[int] = []

    def unlearnable() -> DeleteForm | None:
        asked.append(1)
        return None

    deletes = _deletes(s3_url, learn=unlearnable)
    assert deletes(Bucket="other", Delete={"Objects": [{"Key": "k"}]})["Deleted"]
    assert asked == []  # another bucket: botocore, and nothing learned
    assert deletes(Bucket=BUCKET, Delete={"Objects": [{"Key": "k"}]}, MFA="x y") is not None
    assert asked == []
    deletes(Bucket=BUCKET, Delete={"Objects": [{"Key": "k"}]})
    deletes(Bucket=BUCKET, Delete={"Objects": [{"Key": "k"}]})
    assert asked == [1]  # learned once; unlearnable: botocore from then on


def test_an_answer_botocore_would_handle_turns_direct_requests_off(
    s3_url: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"k")
    warned: list[str] = []
    deletes = _deletes(s3_url, warned=warned)
    deletes(Bucket=BUCKET, Delete={"Objects": [{"Key": "absent"}]})
    conn = deletes._conns.mine()

    def redirected(*_: object, **__: object) -> bytes:
        raise HttpFailure(301, "PermanentRedirect", "elsewhere")

    monkeypatch.setattr(conn, "delete_objects", redirected)
    answer = deletes(Bucket=BUCKET, Delete={"Objects": [{"Key": "k"}]})
    assert [d["Key"] for d in answer["Deleted"]] == ["k"]  # botocore's
    assert warned and "301 PermanentRedirect" in warned[0]
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_the_reader_gives_botocores_fields() -> None:
    answer = (
        b'<?xml version="1.0"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Deleted><Key>a&amp;b</Key><VersionId>v1</VersionId><DeleteMarker>true</DeleteMarker>"
        b"<DeleteMarkerVersionId>m1</DeleteMarkerVersionId></Deleted>"
        b"<Error><Key>c</Key><Code>PreconditionFailed</Code><Message>no</Message></Error>"
        b"</DeleteResult>"
    )
    assert parse_delete_result(answer) == {
        "Deleted": [
            {"Key": "a&b", "VersionId": "v1", "DeleteMarker": True, "DeleteMarkerVersionId": "m1"}
        ],
        "Errors": [{"Key": "c", "Code": "PreconditionFailed", "Message": "no"}],
    }
    assert parse_delete_result(b"<DeleteResult/>") == {"Deleted": [], "Errors": []}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'<!DOCTYPE x [<!ENTITY a "a">]><DeleteResult/>', UnreadableAnswer),
        (b"<ListBucketResult/>", UnreadableAnswer),
        (b"<DeleteResult><Deleted><Key>k</Key>", UnreadableAnswer),
        (b"<Error><Code>SlowDown</Code></Error>", ErrorDocument),
    ],
    ids=["dtd", "another-answer", "cut", "error-document"],
)
def test_the_reader_refuses_what_is_not_a_whole_result(body: bytes, error: type) -> None:
    with pytest.raises(error):
        parse_delete_result(body)


def test_an_identifier_with_anything_else_is_refused() -> None:
    with pytest.raises(ValueError, match="not an object identifier"):
        delete_body([{"Key": "k", "Size": "1"}], quiet=False)
