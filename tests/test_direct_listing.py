"""The listing sent directly (s3/direct.py, s3/list_xml.py, drain/direct_listing.py): against
moto's HTTP server its pages are botocore's, hostile keys and continuation tokens included;
S3's errors, a cut answer and an answer that is not a listing fail as botocore's would (or
louder), and an answer botocore would handle itself hands the listing back to botocore."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError

from s3drain.drain.direct_listing import DirectListing, UnreadableListing
from s3drain.drain.direct_switch import DirectSwitch
from s3drain.s3.client import RequestCounter, make_client, parse_timestamp
from s3drain.s3.direct import Endpoint, HttpFailure
from s3drain.s3.direct_target import DirectTarget, direct_target
from s3drain.s3.list_xml import parse_list_objects_v2
from s3drain.s3.listing import list_pages
from s3drain.s3.retry import RetryPolicy
from s3drain.s3.xml_answer import UnreadableAnswer
from tests import test_direct
from tests.support.endpoints import S3Endpoint
from tests.support.proxy import FaultProxy
from tests.support.server import S3Client
from tests.test_direct import BUCKET, HOSTILE_KEYS, _settings

target = test_direct.target  # the fixture: the direct target learned for BUCKET on moto

LISTED = ("Key", "Size", "ETag", "LastModified", "StorageClass")
# Keys only the URL encoding of the answer carries safely (XML 1.0 cannot hold most of them, and
# a parser turns a bare CR into LF).
CONTROL_KEYS = [
    "cr\rkey",
    "tab\there",
    "bell\x07.csv",
    "x\x01y",
    "plus+and space",
    "%41",
    "&lt;&amp;<b>",
]


def _lister(
    target: DirectTarget, url: str, warned: list[str] | None = None, counter: Any = None
) -> DirectListing:
    return DirectListing(
        target.endpoint,
        target.endpoint.base_path.lstrip("/"),
        credentials=target.credentials,
        client=make_client(_settings(url)),
        switch=DirectSwitch((warned if warned is not None else []).append),
        count=(counter or RequestCounter()).add,
        endpoint_url=url,
    )


def _botocore_page(page: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: entry[k] for k in LISTED if k in entry} for entry in page.get("Contents", [])]


def test_pages_are_botocores_for_hostile_keys_across_continuations(
    s3_endpoint: S3Endpoint,
) -> None:
    s3 = s3_endpoint.client()
    s3.create_bucket(Bucket=BUCKET)
    # moto's HTTP server answers 404 to a key with a line feed in it: it cannot store one.
    breaks = ["new\nline", "both\r\nends"] if s3_endpoint.name == "localstack" else []
    keys = sorted(f"p/{k}" for k in HOSTILE_KEYS + CONTROL_KEYS + breaks)
    for n, key in enumerate(keys):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * n)
    url = s3_endpoint.url
    learned = direct_target(make_client(_settings(url)), BUCKET, _settings(url))
    assert learned is not None
    botocore = make_client(_settings(url))
    counter = RequestCounter()
    direct = _lister(learned, url, counter=counter)
    params: dict[str, Any] = {"Bucket": BUCKET, "Prefix": "p/", "MaxKeys": 4}
    seen: list[str] = []
    while True:
        ours, theirs = direct(**params), botocore.list_objects_v2(**params)
        assert ours["Contents"] == _botocore_page(dict(theirs))
        assert ours["IsTruncated"] == theirs["IsTruncated"]
        assert ours.get("NextContinuationToken") == theirs.get("NextContinuationToken")
        seen += [e["Key"] for e in ours["Contents"]]
        if not ours["IsTruncated"]:
            break
        params["ContinuationToken"] = ours["NextContinuationToken"]
    pages = -(-len(seen) // 4)
    assert counter.snapshot().get("ListObjectsV2") == pages
    if s3_endpoint.name == "localstack":
        # LocalStack's continuation token skips the key after `~tilde...` (a non-ASCII one): its
        # own paged listing, through botocore, misses it just the same (checked page by page
        # above). Its unpaged listing has it.
        assert set(keys) - set(seen) <= {"p/ünïcödé/日本語/файл.bin"}
        assert seen == sorted(seen, key=lambda k: k.encode())
    else:
        assert seen == keys


def test_list_pages_through_the_direct_call_gives_every_record(
    target: DirectTarget, s3: S3Client, s3_url: str
) -> None:
    for n in range(25):
        s3.put_object(Bucket=BUCKET, Key=f"q/{n:03d}", Body=b"y" * n)
    client = make_client(_settings(s3_url))
    retry = RetryPolicy(max_attempts=1)
    direct = list(
        list_pages(client, BUCKET, "q/", retry, page_size=7, call=_lister(target, s3_url))
    )
    plain = list(list_pages(client, BUCKET, "q/", retry, page_size=7))
    assert direct == plain
    assert [len(page) for page in direct] == [7, 7, 7, 4]


def test_s3s_errors_are_botocores_exceptions_for_listobjectsv2(
    target: DirectTarget, s3_url: str
) -> None:
    missing = DirectTarget(replace(target.endpoint, base_path="/nope"), target.credentials, "")
    lister = _lister(missing, s3_url)
    with pytest.raises(ClientError) as raised:
        lister(Bucket="nope", Prefix="", MaxKeys=10)  # moto: NoSuchBucket, 404
    assert raised.value.response["Error"]["Code"] == "NoSuchBucket"
    assert raised.value.operation_name == "ListObjectsV2"


def test_only_the_runs_own_bucket_and_plain_parameters_go_direct(
    target: DirectTarget, s3: S3Client, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.create_bucket(Bucket="other")
    s3.put_object(Bucket="other", Key="o", Body=b"o")
    s3.put_object(Bucket=BUCKET, Key="d/1", Body=b"1")
    lister = _lister(target, s3_url)
    sent: list[object] = []
    real = lister._conn.list_objects_v2

    def counted(*args: Any) -> bytes:
        sent.append(args)
        return real(*args)

    monkeypatch.setattr(lister._conn, "list_objects_v2", counted)
    assert [e["Key"] for e in lister(Bucket="other", Prefix="", MaxKeys=5)["Contents"]] == ["o"]
    lister(Bucket=BUCKET, Prefix="d/", MaxKeys=5, StartAfter="d/0")
    assert sent == []  # both through botocore
    assert [e["Key"] for e in lister(Bucket=BUCKET, Prefix="d/", MaxKeys=5)["Contents"]] == ["d/1"]
    assert len(sent) == 1


def test_an_answer_cut_short_is_a_broken_connection_the_retry_policy_retries(
    target: DirectTarget, s3: S3Client, s3_url: str
) -> None:
    for n in range(40):
        s3.put_object(Bucket=BUCKET, Key=f"c/{n:03d}", Body=b"z")
    with FaultProxy(s3_url) as proxy:
        parts = proxy.url.split("://", 1)[1].rstrip("/")
        host, port = parts.rsplit(":", 1)
        endpoint = Endpoint("http", host, int(port), parts, f"/{BUCKET}", "us-east-1")
        lister = _lister(DirectTarget(endpoint, target.credentials, proxy.url), s3_url)
        proxy.configure(fault_rate=1.0, fault_kinds=("truncate",), max_faults=1)
        with pytest.raises(ConnectionClosedError):
            lister(Bucket=BUCKET, Prefix="c/", MaxKeys=1000)
        proxy.configure(fault_rate=0.0)
        assert len(lister(Bucket=BUCKET, Prefix="c/", MaxKeys=1000)["Contents"]) == 40


def test_an_answer_botocore_would_handle_turns_direct_requests_off(
    target: DirectTarget, s3: S3Client, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put_object(Bucket=BUCKET, Key="r/1", Body=b"1")
    warned: list[str] = []
    lister = _lister(target, s3_url, warned)

    def redirected(*_: object, **__: object) -> bytes:
        raise HttpFailure(301, "PermanentRedirect", "elsewhere")

    monkeypatch.setattr(lister._conn, "list_objects_v2", redirected)
    page = lister(Bucket=BUCKET, Prefix="r/", MaxKeys=10)
    assert [e["Key"] for e in page["Contents"]] == ["r/1"]  # botocore's answer
    assert warned and "301 PermanentRedirect" in warned[0]
    assert not lister._switch.on


def test_an_answer_that_is_not_a_listing_fails_the_listing_as_botocore_errors_do(
    target: DirectTarget, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lister = _lister(target, s3_url)
    for body in (b"<html>oops</html>", b"not xml at all", b'<?xml version="1.0"?>'):
        monkeypatch.setattr(lister._conn, "list_objects_v2", lambda *_, b=body: b)
        with pytest.raises(UnreadableListing) as raised:
            lister(Bucket=BUCKET, Prefix="", MaxKeys=10)
        assert isinstance(raised.value, BotoCoreError)  # the listing's error, not a crash


NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _answer(entries: str, *, ns: bool = True, tail: str = "") -> bytes:
    xmlns = f' xmlns="{NS}"' if ns else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult{xmlns}><Name>b</Name>'
        f"{entries}{tail}</ListBucketResult>"
    ).encode()


def _entry(key: str, stamp: str = "2026-12-05T10:00:00.000Z") -> str:
    return (
        f"<Contents><Key>{key}</Key><LastModified>{stamp}</LastModified>"
        "<ETag>&quot;abc&quot;</ETag><Size>12</Size><Owner><ID>o</ID></Owner>"
        "<StorageClass>STANDARD</StorageClass></Contents>"
    )


@pytest.mark.parametrize("ns", [True, False])
def test_the_reader_decodes_keys_only_when_the_answer_says_they_are_encoded(ns: bool) -> None:
    encoded = _answer(_entry("a%2Bb+c%0A"), ns=ns, tail="<EncodingType>url</EncodingType>")
    plain = _answer(_entry("a%2Bb+c%0A"), ns=ns)
    assert parse_list_objects_v2(encoded, parse_timestamp)["Contents"][0]["Key"] == "a+b c\n"
    assert parse_list_objects_v2(plain, parse_timestamp)["Contents"][0] == {
        "Key": "a%2Bb+c%0A",
        "Size": 12,
        "ETag": '"abc"',
        "LastModified": datetime(2026, 12, 5, 10, tzinfo=UTC),
        "StorageClass": "STANDARD",
    }


def test_the_reader_follows_the_truncation_flag_and_token() -> None:
    more = _answer(
        _entry("k"),
        tail="<IsTruncated>true</IsTruncated><NextContinuationToken>t/+=</NextContinuationToken>",
    )
    page = parse_list_objects_v2(more, parse_timestamp)
    assert page["IsTruncated"] is True and page["NextContinuationToken"] == "t/+="
    last = parse_list_objects_v2(
        _answer("", tail="<IsTruncated>false</IsTruncated>"), parse_timestamp
    )
    assert last == {"Contents": [], "IsTruncated": False}


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ListBucketResult/>',
        b"<Error><Code>InternalError</Code></Error>",
        _answer("<Contents><Size>1</Size></Contents>"),
        _answer(_entry("k", stamp="yesterday")),
        _answer("<Contents><Key>k</Key>", ns=False)[:-20],
    ],
    ids=["dtd", "error-document", "no-key", "bad-time", "cut"],
)
def test_the_reader_refuses_what_is_not_a_whole_listing(body: bytes) -> None:
    with pytest.raises(UnreadableAnswer):
        parse_list_objects_v2(body, parse_timestamp)
