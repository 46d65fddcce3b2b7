"""`s3drain ingest`: the key layout, which files are taken, the bucket, uploads with checksums,
multipart and its abort, the skip-identical re-run, and the round trip through `drain`.

Most tests run in one process against moto's mock_aws; the last ones run the real CLI as a
subprocess against the moto server from conftest.py.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

import s3drain.ingest.plan
from s3drain.cli.main import main, run_ingest_command
from s3drain.config.s3 import S3Settings
from s3drain.config.sources import Sources
from s3drain.errors import ConfigError, ExitCode
from s3drain.ingest.bucket import ensure_bucket
from s3drain.ingest.digest import (
    MAX_PARTS,
    Digest,
    FileChanged,
    FileSlice,
    Remote,
    digest_file,
    is_identical,
    part_size_for,
)
from s3drain.ingest.plan import Layout, LayoutError, collect, plan, today_utc
from s3drain.ingest.run import Fate, IngestResult, run_ingest
from s3drain.ingest.settings import IngestSettings, load_ingest_settings
from s3drain.ingest.upload import Uploader
from s3drain.s3.client import S3Client, make_client
from s3drain.s3.retry import RetryPolicy

MiB = 1024 * 1024
BUCKET = "lake"
DAY = date(2022, 5, 2)
SECRET = "s3cr3t-Never-Print-Me"
PREFIX = "Raw/Local/CSV/Movies/2022/05/02/"
REPO = Path(__file__).resolve().parents[1]
INGEST = ("ingest", "--bucket", BUCKET, "--layer", "Raw", "--origin", "Local", "--spec", "Movies")


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def big_bytes(size: int) -> bytes:
    # Not all one byte: a part sent at the wrong offset must change the object.
    block = bytes(range(256)) * 4096
    return (block * (size // len(block) + 1))[:size]


def settings_for(paths: list[Path], **overrides: Any) -> IngestSettings:
    s3 = S3Settings(
        region=overrides.pop("region", "us-east-1"),
        access_key_id="testing",
        secret_access_key=SECRET,
        max_attempts=overrides.pop("max_attempts", 3),
    )
    base = IngestSettings(
        s3=s3,
        bucket=BUCKET,
        paths=tuple(paths),
        layer="Raw",
        origin="Local",
        spec="Movies",
        format=None,
        date=DAY,
        workers=4,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
    )
    return replace(base, **overrides)


@dataclass
class Run:
    result: IngestResult
    out: str
    err: str

    def by_path(self, name: str) -> Any:
        return next(o for o in self.result.outcomes if o.path.name == name)


def ingest(
    settings: IngestSettings, client: S3Client, today: Callable[[], date] = today_utc
) -> Run:
    out, err = io.StringIO(), io.StringIO()
    result = run_ingest(
        settings, out=out, err=err, client=client, sleep=lambda _: None, today=today
    )
    return Run(result, out.getvalue(), err.getvalue())


def new_client(region: str = "us-east-1") -> S3Client:
    return make_client(
        S3Settings(region=region, access_key_id="testing", secret_access_key="testing")
    )


@pytest.fixture
def aws() -> Iterator[S3Client]:
    with mock_aws():
        yield new_client()


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "more").mkdir(parents=True)
    (folder / "movies.csv").write_bytes(b"id,title\n1,Heat\n2,Ran\n")
    (folder / "more" / "ratings.csv").write_bytes(b"movie,stars\n1,5\n2,4\n")
    return folder


def keys(client: S3Client, bucket: str = BUCKET) -> set[str]:
    page = client.list_objects_v2(Bucket=bucket)
    return {obj["Key"] for obj in page.get("Contents", [])}


def body(client: S3Client, key: str) -> bytes:
    data: bytes = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


# -- fault injection: fail some requests before they reach moto -----------------------------
#
# The handler raises rather than returning a response: botocore calls every before-send handler
# and takes the first answer, so moto (also a before-send handler) would carry out a request
# whose answer we replaced, and a "failed" upload would be stored all the same.


def s3_error(status: int, code: str, operation: str = "Injected") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "injected"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@dataclass
class Faults:
    """`rule(operation, request) -> exception | None`; counts every operation it saw."""

    rule: Callable[[str, Any], BaseException | None]
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self.lock:
            self.seen[operation] = self.seen.get(operation, 0) + 1
            failure = self.rule(operation, request)
        if failure is not None:
            raise failure


def faults(client: S3Client, rule: Callable[[str, Any], BaseException | None]) -> Faults:
    injector = Faults(rule)
    client.meta.events.register_first("before-send.s3", injector)
    return injector


# -- the key layout (pure) --------------------------------------------------------------------


LAYOUT = Layout("Raw", "Local", "Movies", None, DAY)


def test_key_follows_the_layout_of_the_issue() -> None:
    assert LAYOUT.key_for("movies.csv") == "Raw/Local/CSV/Movies/2022/05/02/movies.csv"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("movies.csv", "CSV"),
        ("Movies.Csv", "CSV"),
        ("events.json", "JSON"),
        ("table.parquet", "PARQUET"),
        ("dump.csv.gz", "GZ"),
        ("x.tsv_v2", "TSV_V2"),
        ("v1.2.csv", "CSV"),
    ],
)
def test_format_is_the_last_extension_upper_cased(name: str, fmt: str) -> None:
    assert LAYOUT.key_for(name) == f"Raw/Local/{fmt}/Movies/2022/05/02/{name}"


@pytest.mark.parametrize("name", ["README", "trailing.", ".bashrc", "odd.c sv", "x.ü"])
def test_a_name_without_a_usable_extension_needs_format(name: str) -> None:
    with pytest.raises(LayoutError, match="--format"):
        LAYOUT.key_for(name)
    forced = replace(LAYOUT, format="TXT")
    assert forced.key_for(name) == f"Raw/Local/TXT/Movies/2022/05/02/{name}"


def test_a_given_format_is_used_as_given_for_every_file() -> None:
    forced = replace(LAYOUT, format="Csv")
    assert forced.key_for("movies.json") == "Raw/Local/Csv/Movies/2022/05/02/movies.json"


@pytest.mark.parametrize(
    ("day", "folders"),
    [
        (date(2022, 5, 2), "2022/05/02"),
        (date(2022, 12, 31), "2022/12/31"),
        (date(999, 1, 9), "0999/01/09"),
    ],
)
def test_date_segments_are_zero_padded(day: date, folders: str) -> None:
    assert replace(LAYOUT, day=day).key_for("a.csv") == f"Raw/Local/CSV/Movies/{folders}/a.csv"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("line\nbreak.csv", "control character"),
        ("tab\t.csv", "control character"),
        (".s3drain-abc.part.csv", "s3drain's own"),
        ("bad-\udcff.csv", "not valid UTF-8"),
        ("x" * 1000 + ".csv", "1024"),
    ],
)
def test_names_the_drain_could_not_bring_back_get_no_key(name: str, why: str) -> None:
    with pytest.raises(LayoutError, match=why):
        LAYOUT.key_for(name)


def test_today_is_taken_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    # 23:30 UTC on May 2 is already May 3 on a machine at UTC+14.
    utc_now = datetime(2022, 5, 2, 23, 30, tzinfo=UTC)

    class Clock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Any:
            return utc_now if tz is UTC else datetime(2022, 5, 3, 13, 30)

    monkeypatch.setattr(s3drain.ingest.plan, "datetime", Clock)
    assert today_utc() == date(2022, 5, 2)


# -- which files ------------------------------------------------------------------------------


def test_folders_are_walked_with_sub_folders_and_hidden_things_left_out(tmp_path: Path) -> None:
    top = tmp_path / "in"
    (top / "a" / "b").mkdir(parents=True)
    (top / ".git").mkdir()
    (top / "movies.csv").write_text("m")
    (top / "a" / "b" / "deep.csv").write_text("d")
    (top / ".env").write_text("AWS_SECRET_ACCESS_KEY=x")
    (top / ".s3drain-0123.part").write_text("temp")
    (top / ".git" / "config.csv").write_text("g")
    os.mkfifo(top / "pipe.csv")
    (top / "broken.csv").symlink_to(tmp_path / "nowhere")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "linked.csv").write_text("l")
    (top / "loop").symlink_to(elsewhere)

    files, ignored = collect([top])

    assert [p.relative_to(top).as_posix() for p in files] == ["a/b/deep.csv", "movies.csv"]
    left_out = {p.path.name: p.why for p in ignored}
    assert set(left_out) == {".git", ".env", ".s3drain-0123.part", "pipe.csv", "broken.csv", "loop"}
    assert "symlinked folder" in left_out["loop"]


def test_a_named_file_is_taken_as_named_and_each_file_once(samples: Path) -> None:
    hidden = samples / ".special.csv"
    hidden.write_text("x")
    files, _ = collect([samples, samples / "movies.csv", hidden])
    assert sorted(p.name for p in files) == [".special.csv", "movies.csv", "ratings.csv"]


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        collect([tmp_path / "typo.csv"])


def test_a_named_pipe_is_a_usage_error(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ConfigError, match="not a file or a folder"):
        collect([tmp_path / "pipe"])


def test_files_that_would_share_a_key_are_all_refused(tmp_path: Path) -> None:
    for folder in ("jan", "feb"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "movies.csv").write_text(folder)
    (tmp_path / "jan" / "movies.json").write_text("{}")
    files, _ = collect([tmp_path])

    planned = {p.path.relative_to(tmp_path).as_posix(): p for p in plan(files, LAYOUT)}

    assert planned["jan/movies.csv"].key is None
    assert planned["feb/movies.csv"].key is None
    assert "same key" in (planned["jan/movies.csv"].refused or "")
    assert planned["jan/movies.json"].key == "Raw/Local/JSON/Movies/2022/05/02/movies.json"


# -- the date setting -------------------------------------------------------------------------


def _load(*flags: str) -> IngestSettings:
    args = dict(zip(flags[::2], flags[1::2], strict=True))
    sources = Sources(
        {"bucket": BUCKET, "layer": "Raw", "origin": "Local", "spec": "Movies", **args}, {}, None
    )
    return load_ingest_settings(sources, ["x.csv"])


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("layer", "Raw/Zone"),
        ("origin", "."),
        ("spec", ".."),
        ("spec", "Mov\x1bies"),
        ("origin", "tab\there"),
        ("layer", ".s3drain-part"),
        ("format", "C\nSV"),
        ("layer", "x" * 300),
    ],
)
def test_a_segment_the_drain_would_refuse_is_a_usage_error(setting: str, value: str) -> None:
    """Whatever ingest writes, the drain must be able to bring back: a segment the drain would
    refuse (a control character, s3drain's reserved names, '.', '..', a name too long for a
    file system) is refused here, before anything is uploaded."""
    with pytest.raises(ConfigError, match="cannot be a key segment") as caught:
        _load(setting, value)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "\x1b" not in caught.value.message and "\n" not in caught.value.message


def test_a_given_date_is_parsed() -> None:
    assert _load("date", "2024-02-29").date == date(2024, 2, 29)
    assert _load().date is None


@pytest.mark.parametrize("text", ["2022-5-2", "20220502", "2022-W18-1", "2023-02-29", "today"])
def test_a_bad_date_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        _load("date", text)


def test_a_bad_date_on_the_command_line_exits_2_with_one_line(tmp_path: Path) -> None:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [*INGEST, str(tmp_path), "--date", "2022-13-01", "--env-file", str(env_file)],
        out=out,
        err=err,
    )
    assert code == ExitCode.USAGE
    assert err.getvalue().count("\n") == 1
    assert "2022-13-01" in err.getvalue()


def test_without_a_date_the_run_uses_today(aws: S3Client, samples: Path) -> None:
    run = ingest(settings_for([samples], date=None), aws, today=lambda: date(2030, 1, 9))
    assert run.result.day == date(2030, 1, 9)
    assert "Raw/Local/CSV/Movies/2030/01/09/movies.csv" in keys(aws)


# -- the bucket -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "constraint"), [("us-east-1", None), ("eu-west-1", "eu-west-1")]
)
def test_a_missing_bucket_is_created_in_the_clients_region(
    samples: Path, region: str, constraint: str | None
) -> None:
    with mock_aws():
        client = new_client(region)
        run = ingest(settings_for([samples], region=region), client)
        assert run.result.exit_code == ExitCode.OK, run.err
        assert run.result.bucket_created
        location = client.get_bucket_location(Bucket=BUCKET).get("LocationConstraint")
        assert location == constraint
        assert run.result.requests.get("CreateBucket") == 1

        again = ingest(settings_for([samples], region=region), client)
        assert not again.result.bucket_created
        assert "CreateBucket" not in again.result.requests


def test_an_existing_bucket_is_used_as_it_is(aws: S3Client, samples: Path) -> None:
    aws.create_bucket(Bucket=BUCKET)
    run = ingest(settings_for([samples]), aws)
    assert not run.result.bucket_created
    assert "CreateBucket" not in run.result.requests


def test_someone_elses_bucket_is_a_clear_error_and_no_create(aws: S3Client, samples: Path) -> None:
    seen = faults(aws, lambda op, _: s3_error(403, "403") if op == "HeadBucket" else None)

    with pytest.raises(ConfigError, match="belongs to another account") as caught:
        ingest(settings_for([samples]), aws)

    assert caught.value.exit_code == ExitCode.USAGE
    assert not {"CreateBucket", "PutObject", "HeadObject"} & set(seen.seen)


def test_a_wrong_secret_key_is_not_reported_as_someone_elses_bucket(
    aws: S3Client, samples: Path
) -> None:
    def rule(op: str, _: Any) -> BaseException | None:
        if op == "HeadBucket":
            return s3_error(403, "403")
        if op == "ListObjectsV2":
            return s3_error(403, "SignatureDoesNotMatch")
        return None

    seen = faults(aws, rule)
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY") as caught:
        ingest(settings_for([samples]), aws)
    assert "another account" not in caught.value.message
    assert "CreateBucket" not in seen.seen


def test_someone_elses_bucket_through_the_command_exits_2(
    aws: S3Client, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("s3drain.ingest.run.make_client", lambda *_: aws)
    faults(aws, lambda op, _: s3_error(403, "403") if op == "HeadBucket" else None)
    out, err = io.StringIO(), io.StringIO()

    code = run_ingest_command(settings_for([samples], json_summary=True), out=out, err=err)

    assert code == ExitCode.USAGE
    assert "belongs to another account" in err.getvalue()
    summary = json.loads(out.getvalue())
    assert summary["exit_code"] == 2
    assert "belongs to another account" in summary["error"]
    assert SECRET not in out.getvalue() + err.getvalue()


def test_losing_the_create_race_to_someone_else_is_the_same_error(aws: S3Client) -> None:
    def rule(op: str, _: Any) -> BaseException | None:
        if op == "HeadBucket":
            return s3_error(404, "404")
        if op == "CreateBucket":
            return s3_error(409, "BucketAlreadyExists")
        return None

    faults(aws, rule)
    with pytest.raises(ConfigError, match="belongs to another account"):
        ensure_bucket(aws, RetryPolicy(sleep=lambda _: None), BUCKET, None)


def test_losing_the_create_race_to_ourselves_is_fine(aws: S3Client) -> None:
    def rule(op: str, _: Any) -> BaseException | None:
        if op == "HeadBucket":
            return s3_error(404, "404")
        if op == "CreateBucket":
            return s3_error(409, "BucketAlreadyOwnedByYou")
        return None

    faults(aws, rule)
    assert ensure_bucket(aws, RetryPolicy(sleep=lambda _: None), BUCKET, None) is False


# -- uploads ----------------------------------------------------------------------------------


def test_files_land_at_their_keys_with_a_crc32(aws: S3Client, samples: Path) -> None:
    run = ingest(settings_for([samples]), aws)

    assert run.result.exit_code == ExitCode.OK, run.err
    assert keys(aws) == {f"{PREFIX}movies.csv", f"{PREFIX}ratings.csv"}
    data = (samples / "more" / "ratings.csv").read_bytes()
    assert body(aws, f"{PREFIX}ratings.csv") == data
    head = aws.head_object(Bucket=BUCKET, Key=f"{PREFIX}ratings.csv", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32_b64(data)
    assert head["ContentType"] == "text/csv"
    assert run.result.count(Fate.UPLOADED) == 2


def test_an_empty_file_is_uploaded(aws: S3Client, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    run = ingest(settings_for([tmp_path]), aws)
    assert run.result.exit_code == ExitCode.OK, run.err
    assert body(aws, f"{PREFIX}empty.csv") == b""


def test_a_large_file_goes_up_in_parallel_parts_with_a_full_object_crc32(
    aws: S3Client, tmp_path: Path
) -> None:
    data = big_bytes(11 * MiB + 123)
    (tmp_path / "big.csv").write_bytes(data)

    run = ingest(settings_for([tmp_path]), aws)

    assert run.result.exit_code == ExitCode.OK, run.err
    assert run.by_path("big.csv").parts == 3
    assert run.result.requests["UploadPart"] == 3
    assert "PutObject" not in run.result.requests
    head = aws.head_object(Bucket=BUCKET, Key=f"{PREFIX}big.csv", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32_b64(data)
    assert head["ChecksumType"] == "FULL_OBJECT"
    assert head["ETag"].endswith('-3"')
    assert body(aws, f"{PREFIX}big.csv") == data


def test_a_failed_part_aborts_the_upload_and_the_run_goes_on(aws: S3Client, tmp_path: Path) -> None:
    (tmp_path / "big.csv").write_bytes(big_bytes(11 * MiB))
    (tmp_path / "small.csv").write_bytes(b"a,b\n")

    def rule(op: str, request: Any) -> BaseException | None:
        if op == "UploadPart" and "partNumber=2" in request.url:
            return s3_error(500, "InternalError")
        return None

    seen = faults(aws, rule)
    run = ingest(settings_for([tmp_path], max_attempts=2), aws)

    assert run.result.exit_code == ExitCode.PARTIAL
    failed = run.by_path("big.csv")
    assert failed.fate is Fate.FAILED
    assert "500" in failed.detail
    assert seen.seen["AbortMultipartUpload"] == 1
    assert "CompleteMultipartUpload" not in seen.seen
    assert aws.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert keys(aws) == {f"{PREFIX}small.csv"}
    assert "failed" in run.err and "big.csv" in run.err


def test_a_part_retry_sends_the_part_again_from_disk(aws: S3Client, tmp_path: Path) -> None:
    data = big_bytes(11 * MiB)
    (tmp_path / "big.csv").write_bytes(data)
    tries = {"n": 0}

    def rule(op: str, request: Any) -> BaseException | None:
        if op == "UploadPart" and "partNumber=2" in request.url:
            tries["n"] += 1
            if tries["n"] == 1:
                request.body.read()  # the connection broke after the part was sent
                return s3_error(503, "SlowDown")
        return None

    faults(aws, rule)
    run = ingest(settings_for([tmp_path]), aws)

    assert run.result.exit_code == ExitCode.OK, run.err
    assert run.result.retries == 1
    assert body(aws, f"{PREFIX}big.csv") == data


def test_a_failed_single_upload_leaves_nothing_and_the_others_go_up(
    aws: S3Client, samples: Path
) -> None:
    def rule(op: str, request: Any) -> BaseException | None:
        return s3_error(503, "SlowDown") if op == "PutObject" and "movies" in request.url else None

    seen = faults(aws, rule)
    run = ingest(settings_for([samples], max_attempts=3, verbosity=-1), aws)

    assert run.result.exit_code == ExitCode.PARTIAL
    assert "movies.csv" in run.err  # even --quiet names a file that did not go up
    assert run.by_path("movies.csv").fate is Fate.FAILED
    assert run.by_path("ratings.csv").fate is Fate.UPLOADED
    assert keys(aws) == {f"{PREFIX}ratings.csv"}
    assert seen.seen["PutObject"] == 3 + 1  # three tries for movies, one for ratings
    assert run.result.retries == 2


def test_an_unreadable_file_fails_alone(aws: S3Client, samples: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    (samples / "movies.csv").chmod(0)
    run = ingest(settings_for([samples]), aws)
    assert run.by_path("movies.csv").fate is Fate.FAILED
    assert keys(aws) == {f"{PREFIX}ratings.csv"}


def test_with_nothing_that_could_go_up_no_request_is_sent(aws: S3Client, tmp_path: Path) -> None:
    (tmp_path / "README").write_text("no extension")
    seen = faults(aws, lambda *_: None)
    run = ingest(settings_for([tmp_path]), aws)
    assert run.result.exit_code == ExitCode.PARTIAL
    assert seen.seen == {}
    assert aws.list_buckets()["Buckets"] == []


def test_a_file_that_shrinks_during_upload_fails_and_leaves_nothing(
    aws: S3Client, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_head = Uploader.head

    def head_then_truncate(self: Uploader, key: str) -> Remote | None:
        found = real_head(self, key)
        if key.endswith("movies.csv"):
            (samples / "movies.csv").write_bytes(b"id")  # cut short after it was checksummed
        return found

    monkeypatch.setattr(Uploader, "head", head_then_truncate)
    run = ingest(settings_for([samples]), aws)

    assert run.by_path("movies.csv").fate is Fate.FAILED
    assert "changed during upload" in run.by_path("movies.csv").detail
    assert keys(aws) == {f"{PREFIX}ratings.csv"}


def test_refused_files_make_the_run_partial_but_the_others_go_up(
    aws: S3Client, tmp_path: Path
) -> None:
    (tmp_path / "README").write_text("no extension")
    (tmp_path / "movies.csv").write_text("m")
    run = ingest(settings_for([tmp_path]), aws)
    assert run.result.exit_code == ExitCode.PARTIAL
    assert run.by_path("README").fate is Fate.REFUSED
    assert keys(aws) == {f"{PREFIX}movies.csv"}
    assert "--format" in run.err


# -- re-runs ----------------------------------------------------------------------------------


def test_a_rerun_skips_identical_objects_and_says_so(aws: S3Client, samples: Path) -> None:
    (samples / "big.csv").write_bytes(big_bytes(11 * MiB))
    first = ingest(settings_for([samples]), aws)
    assert first.result.count(Fate.UPLOADED) == 3, first.err

    again = ingest(settings_for([samples], verbosity=1), aws)

    assert again.result.exit_code == ExitCode.OK
    assert again.result.count(Fate.SKIPPED) == 3
    assert not {"PutObject", "UploadPart", "CreateMultipartUpload"} & set(again.result.requests)
    assert again.err.count("already there, identical") == 3


def test_a_different_object_at_the_key_is_a_conflict_unless_overwrite(
    aws: S3Client, samples: Path
) -> None:
    ingest(settings_for([samples]), aws)
    movies = samples / "movies.csv"
    movies.write_bytes(movies.read_bytes().replace(b"Heat", b"Jaws"))  # same size, other bytes

    again = ingest(settings_for([samples]), aws)

    assert again.result.exit_code == ExitCode.PARTIAL
    assert again.by_path("movies.csv").fate is Fate.CONFLICT
    assert "a different object is at the key (crc32)" in again.by_path("movies.csv").detail
    assert "conflict" in again.err and "--overwrite" in again.err  # said without -v
    assert again.by_path("ratings.csv").fate is Fate.SKIPPED
    assert b"Heat" in body(aws, f"{PREFIX}movies.csv")  # the object in S3 was kept

    forced = ingest(settings_for([samples], overwrite=True), aws)

    assert forced.result.exit_code == ExitCode.OK
    assert forced.by_path("movies.csv").fate is Fate.UPLOADED
    assert "replaced a different object (crc32, --overwrite)" in forced.by_path("movies.csv").detail
    assert b"Jaws" in body(aws, f"{PREFIX}movies.csv")


def test_an_object_that_appears_during_the_upload_is_not_replaced(
    aws: S3Client, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check before the upload saw nothing; the producer's object lands meanwhile. The
    upload is conditional (If-None-Match: *), so S3 itself refuses to replace it."""
    real_head = Uploader.head

    def head_then_someone_uploads(self: Uploader, key: str) -> Remote | None:
        found = real_head(self, key)
        if key.endswith("movies.csv"):
            aws.put_object(Bucket=BUCKET, Key=key, Body=b"the producer's own bytes")
        return found

    monkeypatch.setattr(Uploader, "head", head_then_someone_uploads)
    run = ingest(settings_for([samples]), aws)

    assert run.by_path("movies.csv").fate is Fate.CONFLICT
    assert "appeared at the key during the upload" in run.by_path("movies.csv").detail
    assert body(aws, f"{PREFIX}movies.csv") == b"the producer's own bytes"
    assert run.result.exit_code == ExitCode.PARTIAL


def test_an_object_without_crc32_is_compared_by_its_md5_etag(aws: S3Client, samples: Path) -> None:
    aws.create_bucket(Bucket=BUCKET)
    data = (samples / "movies.csv").read_bytes()
    # A plain PUT as older tools send it: no flexible checksum, an MD5 ETag.
    plain: Any = botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(request_checksum_calculation="when_required"),
    )
    plain.put_object(Bucket=BUCKET, Key=f"{PREFIX}movies.csv", Body=data)
    head = aws.head_object(Bucket=BUCKET, Key=f"{PREFIX}movies.csv", ChecksumMode="ENABLED")
    assert "ChecksumCRC32" not in head

    run = ingest(settings_for([samples / "movies.csv"]), aws)

    assert run.by_path("movies.csv").fate is Fate.SKIPPED
    assert "md5" in run.by_path("movies.csv").detail


def test_write_only_credentials_upload_without_the_identical_check(
    aws: S3Client, samples: Path
) -> None:
    faults(aws, lambda op, _: s3_error(403, "403") if op == "HeadObject" else None)
    run = ingest(settings_for([samples]), aws)
    assert run.result.exit_code == ExitCode.OK
    assert run.result.count(Fate.UPLOADED) == 2
    assert run.err.count("denied HeadObject") == 1


# -- identical? (pure) ------------------------------------------------------------------------


def _never() -> str:
    raise AssertionError("MD5 computed although a checksum decided")


DIGEST = Digest(
    size=10, crc32="AAAAAQ==", part_size=4, part_crc32=("AAAAAg==", "AAAAAw==", "AAAABA==")
)


@pytest.mark.parametrize(
    ("remote", "md5", "expected"),
    [
        (Remote(11, "0" * 32, "AAAAAQ=="), _never, (False, "size 11 bytes")),
        (Remote(10, "0" * 32, "AAAAAQ=="), _never, (True, "crc32")),
        (Remote(10, "0" * 32, "AAAAAA=="), _never, (False, "crc32")),
        (Remote(10, "x-3", DIGEST.composite_crc32), _never, (True, "composite crc32")),
        (Remote(10, "x-3", "AAAAAA==-3"), lambda: "x", (False, "no comparable checksum")),
        (Remote(10, "a" * 32, None), lambda: "a" * 32, (True, "md5")),
        (Remote(10, "a" * 32, None), lambda: "b" * 32, (False, "md5")),
        (Remote(10, "a" * 32 + "-2", None), _never, (False, "no comparable checksum")),
    ],
)
def test_identical_needs_a_checksum_or_an_md5_etag_never_size_alone(
    remote: Remote, md5: Callable[[], str], expected: tuple[bool, str]
) -> None:
    assert is_identical(DIGEST, remote, md5) == expected


def test_composite_crc32_is_crc32_of_the_part_checksums() -> None:
    parts = [b"a" * 5, b"b" * 5, b"c"]
    digest = Digest(11, crc32_b64(b"".join(parts)), 5, tuple(crc32_b64(p) for p in parts))
    raw = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts)
    assert digest.composite_crc32 == f"{crc32_b64(raw)}-3"


# -- reading files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "part_size"),
    [
        (5 * MiB + 7, 0),
        (5 * MiB + 7, MiB),
        (5 * MiB + 7, 3 * MiB // 2),
        (5 * MiB + 7, 5 * MiB),
        (10 * MiB, 5 * MiB),
        (0, 5 * MiB),
    ],
)
def test_digest_gives_the_whole_and_each_part(tmp_path: Path, size: int, part_size: int) -> None:
    data = big_bytes(size)
    path = tmp_path / "f"
    path.write_bytes(data)

    digest = digest_file(path, part_size)

    assert (digest.size, digest.crc32) == (len(data), crc32_b64(data))
    step = part_size or len(data)
    expected = [crc32_b64(data[i : i + step]) for i in range(0, len(data), step)] or [
        crc32_b64(b"")
    ]
    assert list(digest.part_crc32) == (expected if part_size else [])


def test_part_size_grows_to_stay_within_ten_thousand_parts() -> None:
    assert part_size_for(100 * MiB, 16 * MiB) == 16 * MiB
    grown = part_size_for(MAX_PARTS * 16 * MiB + 1, 16 * MiB)
    assert grown == 17 * MiB
    assert -(-(MAX_PARTS * 16 * MiB + 1) // grown) <= MAX_PARTS


def test_a_file_slice_reads_seeks_and_notices_a_shrunken_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with FileSlice(path, 2, 5) as piece:
        assert piece.read(2) == b"23"
        assert piece.read() == b"456"
        assert piece.read() == b""
        assert piece.seek(0, os.SEEK_END) == 5
        assert piece.seek(1) == 1
        assert piece.read(100) == b"3456"
    with FileSlice(path, 8, 5) as past_the_end:
        assert past_the_end.read(2) == b"89"
        with pytest.raises(FileChanged):
            past_the_end.read()


# -- output -----------------------------------------------------------------------------------


def test_dry_run_prints_the_keys_and_sends_nothing(samples: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    # No mock and an endpoint nobody listens on: any request would fail the test.
    settings = settings_for([samples], dry_run=True)
    settings = replace(settings, s3=replace(settings.s3, endpoint_url="http://127.0.0.1:9"))

    code = run_ingest_command(settings, out=out, err=err)

    assert code == ExitCode.OK, err.getvalue()
    text = out.getvalue()
    assert f"would upload {samples / 'movies.csv'} -> {PREFIX}movies.csv" in text
    assert f"-> {PREFIX}ratings.csv" in text
    assert "dry run" in text


def test_json_summary_counts_files_and_bytes(
    aws: S3Client, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("s3drain.ingest.run.make_client", lambda *_: aws)
    (samples / "README").write_text("x")
    out, err = io.StringIO(), io.StringIO()

    code = run_ingest_command(settings_for([samples], json_summary=True), out=out, err=err)

    assert code == ExitCode.PARTIAL
    summary = json.loads(out.getvalue())
    assert summary["files"] == {
        "uploaded": 2,
        "skipped": 0,
        "failed": 0,
        "conflict": 0,
        "refused": 1,
        "planned": 0,
    }
    size = sum(p.stat().st_size for p in samples.rglob("*.csv"))
    assert summary["bytes_uploaded"] == size
    assert summary["date"] == "2022-05-02"
    assert summary["bucket_created"] is True
    assert {r["key"] for r in summary["results"]} == {
        f"{PREFIX}movies.csv",
        f"{PREFIX}ratings.csv",
        None,
    }
    assert SECRET not in out.getvalue() + err.getvalue()


def test_human_summary_names_the_destination_and_the_result(
    aws: S3Client, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("s3drain.ingest.run.make_client", lambda *_: aws)
    out, err = io.StringIO(), io.StringIO()
    code = run_ingest_command(settings_for([samples]), out=out, err=err)
    text = out.getvalue()
    assert code == ExitCode.OK, err.getvalue()
    assert f"s3://{BUCKET}/{PREFIX}" in text
    assert "result: ok (exit 0)" in text


def test_a_stop_request_leaves_the_remaining_files_unstarted(aws: S3Client, samples: Path) -> None:
    stop = threading.Event()
    stop.set()
    out, err = io.StringIO(), io.StringIO()
    result = run_ingest(settings_for([samples]), out=out, err=err, client=aws, stop=stop)
    assert result.exit_code == ExitCode.INTERRUPTED
    assert result.not_started == 2
    assert keys(aws) == set()


# -- the real command against a moto server ----------------------------------------------------


def cli(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "S3DRAIN_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION="us-east-1",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=str(REPO),
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "s3drain",
            *args,
            "--endpoint-url",
            url,
            "--addressing-style",
            "path",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_ingests_and_a_rerun_skips(s3_url: str, s3: Any, tmp_path: Path) -> None:
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "movies.csv").write_bytes(b"id,title\n1,Heat\n")

    first = cli(*INGEST, str(folder), "--date", "2022-05-02", "--json", url=s3_url, cwd=tmp_path)
    again = cli(*INGEST, str(folder), "--date", "2022-05-02", "-v", url=s3_url, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["files"]["uploaded"] == 1
    assert summary["results"][0]["key"] == f"{PREFIX}movies.csv"
    assert s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}movies.csv")["Body"].read() == (
        b"id,title\n1,Heat\n"
    )
    assert again.returncode == 0, again.stderr
    assert "already there, identical" in again.stderr
    assert SECRET not in first.stdout + first.stderr + again.stdout + again.stderr


def test_round_trip_ingest_then_drain_gives_back_the_same_bytes(
    s3_url: str, s3: Any, tmp_path: Path
) -> None:
    source = tmp_path / "samples"
    (source / "more").mkdir(parents=True)
    files = {
        "movies.csv": b"id,title,year\n1,Heat,1995\n2,Ran,1985\n",
        "more/ratings.csv": b"movie,stars\n1,5\n2,4\n",
        "big.csv": big_bytes(6 * MiB + 5),  # over the threshold: a multipart upload
        "empty.csv": b"",
    }
    for name, data in files.items():
        (source / name).write_bytes(data)
    base = tmp_path / "etl"

    put = cli(
        *INGEST,
        str(source),
        "--date",
        "2022-05-02",
        "--multipart-threshold",
        "5MiB",
        "--part-size",
        "5MiB",
        url=s3_url,
        cwd=tmp_path,
    )
    assert put.returncode == 0, put.stderr + put.stdout
    multipart = s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}big.csv")
    assert multipart["ETag"].endswith('-2"')

    got = cli(
        "drain",
        "--bucket",
        BUCKET,
        "--prefix",
        "Raw/Local/CSV/Movies/",
        "--local-base-path",
        str(base),
        url=s3_url,
        cwd=tmp_path,
    )

    assert got.returncode == 0, got.stderr + got.stdout
    landed = base / "raw" / "2022" / "05" / "02"
    assert sorted(p.name for p in landed.iterdir()) == sorted(Path(n).name for n in files)
    for name, data in files.items():
        assert (landed / Path(name).name).read_bytes() == data, name
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
