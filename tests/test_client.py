"""The botocore client s3drain builds: its fast timestamp parser, its User-Agent, and where its
models come from."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.loaders
import pytest
from botocore.exceptions import UnknownServiceError
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


def _settings() -> S3Settings:
    return S3Settings(region="us-east-1", access_key_id="k", secret_access_key="s")


def test_building_the_client_does_not_walk_every_service_botocore_knows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # botocore lists its ~450 service folders to find `s3` among them: 25 ms at every start.
    listed: list[str] = []
    real = os.listdir

    def counting(path: Any = ".") -> list[str]:
        listed.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "listdir", counting)
    client = make_client(_settings())
    assert client.meta.service_model.service_name == "s3"
    assert len(listed) < 20, listed[:30]


def test_a_model_on_aws_data_path_is_still_the_one_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_DATA_PATH (botocore's search path for models) is searched before botocore's own
    data, as botocore does: a user's patched S3 model is the one the client is built from."""
    builtin = Path(botocore.loaders.Loader.BUILTIN_DATA_PATH) / "s3"
    version = sorted(p.name for p in builtin.iterdir() if p.is_dir())[-1]
    source = builtin / version / "service-2.json.gz"
    model = json.loads(gzip.decompress(source.read_bytes()))
    model["metadata"]["serviceFullName"] = "Patched S3"
    folder = tmp_path / "models" / "s3" / version
    folder.mkdir(parents=True)
    (folder / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "models"))
    client = make_client(_settings())
    assert client.meta.service_model.metadata["serviceFullName"] == "Patched S3"


def test_without_an_s3_model_anywhere_the_client_cannot_be_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = Path(botocore.loaders.Loader.BUILTIN_DATA_PATH)
    for item in data.iterdir():  # botocore's data files, without one service folder
        if item.is_file():
            (tmp_path / item.name).symlink_to(item)
    monkeypatch.setattr(botocore.loaders.Loader, "BUILTIN_DATA_PATH", str(tmp_path))
    monkeypatch.setattr(botocore.loaders.Loader, "CUSTOMER_DATA_PATH", str(tmp_path / "none"))
    with pytest.raises(UnknownServiceError):
        make_client(_settings())
