"""The botocore client s3drain builds: its fast timestamp parser and its User-Agent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from moto import mock_aws

from s3drain.config.s3 import S3Settings
from s3drain.s3.client import RequestCounter, make_client, parse_timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T19:09:09.000Z", datetime(2026, 11, 23, 19, 9, 9, tzinfo=UTC)),
        ("2026-11-23T19:09:09Z", datetime(2026, 11, 23, 19, 9, 9, tzinfo=UTC)),
        ("2026-11-23T19:09:09.123456+00:00", datetime(2026, 11, 23, 19, 9, 9, 123456, tzinfo=UTC)),
        ("Mon, 23 Nov 2026 19:11:28 GMT", datetime(2026, 11, 23, 19, 11, 28, tzinfo=UTC)),
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),  # botocore's fallback
        ("2026-11-23T19:09:09", datetime(2026, 11, 23, 19, 9, 9, tzinfo=UTC)),  # no zone: UTC
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_client_parses_listing_times_and_sends_our_user_agent() -> None:
    agents: list[str] = []
    with mock_aws():
        counter = RequestCounter()
        client = make_client(
            S3Settings(region="us-east-1", access_key_id="k", secret_access_key="s"), counter
        )

        def note(request: Any, **_: Any) -> None:
            value = request.headers["User-Agent"]
            agents.append(value.decode() if isinstance(value, bytes) else value)

        client.meta.events.register("before-send.s3", note)
        client.create_bucket(Bucket="bkt")
        client.put_object(Bucket="bkt", Key="k", Body=b"x")
        listed = client.list_objects_v2(Bucket="bkt")["Contents"][0]["LastModified"]
    assert isinstance(listed, datetime) and listed.tzinfo is not None
    assert abs((datetime.now(UTC) - listed).total_seconds()) < 300
    assert len(agents) == 3 and all("s3drain/" in agent for agent in agents)
    assert counter.snapshot() == {"CreateBucket": 1, "PutObject": 1, "ListObjectsV2": 1}
