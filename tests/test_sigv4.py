"""s3drain's own SigV4 (s3/sigv4.py) against botocore's S3SigV4Auth: the same request signed by
both at the same instant must carry the same headers and the same signature."""

from __future__ import annotations

import calendar
import datetime
from typing import Any
from unittest import mock

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from s3drain.s3.sigv4 import Credentials, Signer, quote_key, quote_query

NOW = datetime.datetime(2026, 12, 4, 3, 4, 5)


def _botocore_headers(
    creds: Credentials, region: str, url: str, headers: dict[str, str]
) -> dict[str, str]:
    request = AWSRequest(method="GET", url=url, headers=dict(headers))
    auth = S3SigV4Auth(
        BotoCredentials(creds.access_key, creds.secret_key, creds.token), "s3", region
    )

    class _Clock(datetime.datetime):
        @classmethod
        def utcnow(cls) -> Any:
            return NOW

        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return NOW.replace(tzinfo=tz) if tz else NOW

    with mock.patch("botocore.auth.datetime.datetime", _Clock):
        auth.add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


KEYS = [
    "plain.csv",
    "dir/sub/file name with spaces.csv",
    "a+b%2Bc&d=e?f#g",
    "ünïcödé/日本語/файл.bin",
    "a//b/./c/../d",
    "~tilde/!*'()[]$,;:@",
]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("token", [None, "session/token+with=odd"])
@pytest.mark.parametrize("version", [None, "3/L4kqtJl40Nr8X8gdRQBpUMLUo+"])
def test_same_signature_as_botocore(key: str, token: str | None, version: str | None) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    host = "127.0.0.1:8333"
    path = "/bucket/" + quote_key(key)
    query = f"versionId={quote_query(version)}" if version else ""
    extra = {"if-match": '"0123abc"', "x-amz-checksum-mode": "ENABLED", "range": "bytes=0-9"}
    ours = Signer("eu-west-1").sign(
        creds, "GET", host, path, query=query, headers=extra, now=calendar.timegm(NOW.timetuple())
    )
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    theirs = _botocore_headers(creds, "eu-west-1", url, {**extra, "host": host})
    assert ours["authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"]
    assert ours["x-amz-content-sha256"] == theirs["x-amz-content-sha256"]
    assert ours.get("x-amz-security-token") == theirs.get("x-amz-security-token")


def test_a_different_secret_or_region_changes_the_signature() -> None:
    now = calendar.timegm(NOW.timetuple())
    base = Signer("us-east-1").sign(Credentials("AK", "s1"), "GET", "h", "/b/k", now=now)
    other_secret = Signer("us-east-1").sign(Credentials("AK", "s2"), "GET", "h", "/b/k", now=now)
    other_region = Signer("eu-west-1").sign(Credentials("AK", "s1"), "GET", "h", "/b/k", now=now)
    assert (
        len({base["authorization"], other_secret["authorization"], other_region["authorization"]})
        == 3
    )


def test_the_signing_key_follows_the_secret_and_the_day() -> None:
    signer = Signer("us-east-1")
    day1 = calendar.timegm(NOW.timetuple())
    first = signer.sign(Credentials("AK", "s1"), "GET", "h", "/b/k", now=day1)
    # Rotated credentials (an assumed role renewing) and a new day each derive a new key.
    rotated = signer.sign(Credentials("AK", "s2"), "GET", "h", "/b/k", now=day1)
    fresh = Signer("us-east-1").sign(Credentials("AK", "s2"), "GET", "h", "/b/k", now=day1)
    assert rotated["authorization"] == fresh["authorization"] != first["authorization"]
    tomorrow = signer.sign(Credentials("AK", "s2"), "GET", "h", "/b/k", now=day1 + 86400)
    fresh_tomorrow = Signer("us-east-1").sign(
        Credentials("AK", "s2"), "GET", "h", "/b/k", now=day1 + 86400
    )
    assert tomorrow["authorization"] == fresh_tomorrow["authorization"]
