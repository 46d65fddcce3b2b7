"""The Python surface (`import s3drain`): a whole drain and an ingest through it, against moto's
HTTP server, the way an Airflow or Dagster task would call it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import s3drain
from tests.support.drainkit import bucket_keys, local_tree
from tests.support.server import S3Client

ENVIRON = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _connection(url: str) -> dict[str, str]:
    return {"endpoint_url": url, "region": "us-east-1", "addressing_style": "path"}


def test_drain_through_the_public_surface(s3: S3Client, s3_url: str, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="lake")
    for name in ("a.csv", "sub/b.csv"):
        s3.put_object(Bucket="lake", Key=f"exports/{name}", Body=name.encode() * 10)
    s3.put_object(Bucket="lake", Key="other/c.csv", Body=b"stays")

    settings = s3drain.drain_settings(
        bucket="lake",
        prefix="exports/",
        local_base_path=tmp_path,
        workers=2,
        environ=ENVIRON,
        **_connection(s3_url),
    )
    result = s3drain.run_drain(settings)

    assert result.exit_code is s3drain.ExitCode.OK
    assert result.totals.counts == {"downloaded": 2}
    assert local_tree(tmp_path / "raw") == {"a.csv": b"a.csv" * 10, "sub/b.csv": b"sub/b.csv" * 10}
    assert bucket_keys(s3, "lake") == {"other/c.csv"}


def test_options_go_through_the_same_checks_as_flags(tmp_path: Path) -> None:
    with pytest.raises(s3drain.ConfigError, match="workers"):
        s3drain.drain_settings(
            bucket="lake", prefix="", local_base_path=tmp_path, workers=0, environ=ENVIRON
        )
    with pytest.raises(s3drain.ConfigError, match="prefix is not set"):
        s3drain.drain_settings(bucket="lake", local_base_path=tmp_path, environ=ENVIRON)
    settings = s3drain.drain_settings(
        bucket="lake",
        prefix="x/",
        local_base_path=tmp_path,
        dry_run=True,
        include=["*.csv"],
        exclude="tmp/**",
        environ=ENVIRON,
    )
    assert settings.dry_run is True
    assert [(rule.include, rule.pattern) for rule in settings.rules] == [
        (False, "tmp/**"),
        (True, "*.csv"),
    ]


def test_a_stop_event_ends_a_run_like_ctrl_c(s3: S3Client, s3_url: str, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="lake")
    s3.put_object(Bucket="lake", Key="exports/a.csv", Body=b"x")
    settings = s3drain.drain_settings(
        bucket="lake",
        prefix="exports/",
        local_base_path=tmp_path,
        environ=ENVIRON,
        **_connection(s3_url),
    )
    stop = threading.Event()
    stop.set()
    result = s3drain.run_drain(settings, stop=stop)
    assert result.exit_code is s3drain.ExitCode.INTERRUPTED
    assert bucket_keys(s3, "lake") == {"exports/a.csv"}


def test_ingest_through_the_public_surface(s3: S3Client, s3_url: str, tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_bytes(b"id,title\n1,x\n")
    settings = s3drain.ingest_settings(
        [tmp_path / "movies.csv"],
        bucket="lake",
        layer="Raw",
        origin="Local",
        spec="Movies",
        date="2022-05-02",
        environ=ENVIRON,
        **_connection(s3_url),
    )
    result = s3drain.run_ingest(settings)
    assert result.exit_code is s3drain.ExitCode.OK
    assert bucket_keys(s3, "lake") == {"Raw/Local/CSV/Movies/2022/05/02/movies.csv"}


def test_the_public_names_are_exactly_these() -> None:
    assert sorted(s3drain.__all__) == sorted(
        [
            "ConfigError",
            "DrainResult",
            "DrainSettings",
            "ExitCode",
            "IngestResult",
            "IngestSettings",
            "S3DrainError",
            "__version__",
            "drain_settings",
            "ingest_settings",
            "run_drain",
            "run_ingest",
        ]
    )
    for name in s3drain.__all__:
        assert getattr(s3drain, name) is not None
