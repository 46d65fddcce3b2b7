"""Settings (flags > environment > .env), their validation messages, filters, shards and units."""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest
from moto import mock_aws

from s3drain.config.s3 import S3Settings, load_s3_settings
from s3drain.config.sources import DEFAULT_ENV_FILE, Sources
from s3drain.drain.filters import (
    Shard,
    compile_rule,
    in_shard,
    parse_shard,
    rules_accept,
    skip_reason,
)
from s3drain.drain.settings import DrainSettings, load_drain_settings
from s3drain.errors import ConfigError, ExitCode
from s3drain.s3.client import make_client
from s3drain.units import format_duration, format_size, parse_duration, parse_size

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

ACCESS_KEY = "AKIAEXAMPLEACCESS123"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY1"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKENvalue99"


def write_env(tmp_path: Path, values: Mapping[str, str], name: str = "settings.env") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def required_flags(tmp_path: Path, *, without: str | None = None) -> dict[str, object]:
    flags: dict[str, object] = {
        "bucket": "lake",
        "prefix": "exports/2024/",
        "local_base_path": str(tmp_path / "base"),
    }
    if without is not None:
        del flags[without]
    return flags


def load(
    tmp_path: Path,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str] | None = None,
    *,
    without: str | None = None,
) -> DrainSettings:
    env_file = write_env(tmp_path, dotenv) if dotenv is not None else None
    all_flags = {**required_flags(tmp_path, without=without), **(flags or {})}
    return load_drain_settings(Sources(all_flags, environ or {}, env_file))


def config_error(
    tmp_path: Path,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str] | None = None,
    *,
    without: str | None = None,
) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, flags, environ, dotenv, without=without)
    assert caught.value.exit_code == ExitCode.USAGE
    assert "\n" not in str(caught.value)
    return caught.value


# --- defaults -----------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path)
    base = tmp_path / "base"
    assert settings.bucket == "lake"
    assert settings.prefix == "exports/2024/"
    assert settings.local_base_path == base
    assert settings.raw_dir == base / "raw"
    assert settings.processed_dir == base / "processed"
    assert settings.state_dir == base / ".s3drain"
    assert settings.match is None  # --match no longer does anything (a warning says so)
    assert settings.delete_mode == "auto" and not settings.require_exact_delete
    assert settings.ledger_retention == 90 * 86400
    assert settings.workers == 64
    assert settings.part_size == 8 * MiB
    assert settings.min_age is None
    assert settings.shard is None
    assert settings.rules == ()
    assert settings.s3.endpoint_url is None
    assert settings.s3.access_key_id is None
    assert settings.s3.secret_access_key is None


# --- precedence: .env < environment < flags -----------------------------------------------------


@pytest.mark.parametrize(
    ("dotenv", "environ", "flag", "expected"),
    [
        ("from-dotenv", None, None, "from-dotenv"),
        (None, "from-environ", None, "from-environ"),
        (None, None, "from-flag", "from-flag"),
        ("from-dotenv", "from-environ", None, "from-environ"),
        (None, "from-environ", "from-flag", "from-flag"),
        ("from-dotenv", None, "from-flag", "from-flag"),
        ("from-dotenv", "from-environ", "from-flag", "from-flag"),
    ],
)
def test_precedence_for_bucket(
    tmp_path: Path, dotenv: str | None, environ: str | None, flag: str | None, expected: str
) -> None:
    settings = load(
        tmp_path,
        flags={"bucket": flag} if flag else {},
        environ={"BUCKET_NAME": environ} if environ else {},
        dotenv={"BUCKET_NAME": dotenv} if dotenv else {},
        without="bucket",
    )
    assert settings.bucket == expected


@pytest.mark.parametrize(
    ("dotenv", "environ", "flag", "expected"),
    [
        ("3", "5", None, 5),
        (None, "5", "7", 7),
        ("3", None, "7", 7),
        ("3", "5", "7", 7),
        ("3", None, None, 3),
    ],
)
def test_precedence_for_workers(
    tmp_path: Path, dotenv: str | None, environ: str | None, flag: str | None, expected: int
) -> None:
    settings = load(
        tmp_path,
        flags={"workers": flag} if flag else {},
        environ={"S3DRAIN_WORKERS": environ} if environ else {},
        dotenv={"S3DRAIN_WORKERS": dotenv} if dotenv else {},
    )
    assert settings.workers == expected


def test_precedence_for_local_base_path(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        environ={"LOCAL_BASE_PATH": str(tmp_path / "env-base")},
        dotenv={"LOCAL_BASE_PATH": str(tmp_path / "dotenv-base")},
        without="local_base_path",
    )
    assert settings.local_base_path == tmp_path / "env-base"
    assert settings.raw_dir == tmp_path / "env-base" / "raw"


def test_none_flags_fall_through_to_the_environment(tmp_path: Path) -> None:
    """argparse leaves unset flags as None: they must not hide the environment."""
    settings = load(tmp_path, flags={"workers": None}, environ={"S3DRAIN_WORKERS": "4"})
    assert settings.workers == 4


# --- names are case-insensitive; the seed's names work --------------------------------------------


@pytest.mark.parametrize("name", ["bucket_name", "BUCKET_NAME", "Bucket_Name"])
@pytest.mark.parametrize("layer", ["environ", "dotenv"])
def test_names_are_case_insensitive(tmp_path: Path, name: str, layer: str) -> None:
    values = {name: "cased-bucket"}
    settings = load(
        tmp_path,
        environ=values if layer == "environ" else None,
        dotenv=values if layer == "dotenv" else None,
        without="bucket",
    )
    assert settings.bucket == "cased-bucket"


SEED = {
    "aws_access_key_id": ACCESS_KEY,
    "aws_secret_access_key": SECRET_KEY,
    "bucket_name": "seed-bucket",
    "path_to_search": "Raw/Local/CSV/",
}


@pytest.mark.parametrize("layer", ["environ", "dotenv"])
def test_seed_lower_case_names_work_unchanged(tmp_path: Path, layer: str) -> None:
    values = {**SEED, "local_base_path": str(tmp_path / "seed-base")}
    env_file = write_env(tmp_path, values) if layer == "dotenv" else None
    environ = values if layer == "environ" else {}
    settings = load_drain_settings(Sources({}, environ, env_file))
    assert settings.bucket == "seed-bucket"
    assert settings.prefix == "Raw/Local/CSV/"
    assert settings.local_base_path == tmp_path / "seed-base"
    assert settings.s3.access_key_id == ACCESS_KEY
    assert settings.s3.secret_access_key == SECRET_KEY


# --- endpoint and region ------------------------------------------------------------------------

ENDPOINT_A = "http://127.0.0.1:9000"
ENDPOINT_B = "http://127.0.0.1:9001"
ENDPOINT_C = "https://s3.example.com"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {
                "S3_ENDPOINT_URL": ENDPOINT_A,
                "AWS_ENDPOINT_URL_S3": ENDPOINT_B,
                "AWS_ENDPOINT_URL": ENDPOINT_C,
            },
            ENDPOINT_A,
        ),
        ({"AWS_ENDPOINT_URL": ENDPOINT_C, "AWS_ENDPOINT_URL_S3": ENDPOINT_B}, ENDPOINT_B),
        ({"AWS_ENDPOINT_URL": ENDPOINT_C, "S3_ENDPOINT_URL": ENDPOINT_A}, ENDPOINT_A),
        ({"AWS_ENDPOINT_URL": ENDPOINT_C}, ENDPOINT_C),
        ({"aws_endpoint_url_s3": ENDPOINT_B}, ENDPOINT_B),
        ({}, None),
    ],
)
@pytest.mark.parametrize("layer", ["environ", "dotenv"])
def test_endpoint_first_name_wins_within_a_layer(
    tmp_path: Path, values: dict[str, str], expected: str | None, layer: str
) -> None:
    env_file = write_env(tmp_path, values) if layer == "dotenv" else None
    sources = Sources({}, values if layer == "environ" else {}, env_file)
    assert load_s3_settings(sources, workers=4).endpoint_url == expected


def test_endpoint_environment_beats_dotenv_even_with_a_later_name(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, {"S3_ENDPOINT_URL": ENDPOINT_A})
    sources = Sources({}, {"AWS_ENDPOINT_URL": ENDPOINT_C}, env_file)
    assert load_s3_settings(sources, workers=4).endpoint_url == ENDPOINT_C


def test_endpoint_flag_beats_everything(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, {"S3_ENDPOINT_URL": ENDPOINT_A})
    sources = Sources(
        {"endpoint_url": ENDPOINT_B}, {"S3_ENDPOINT_URL": ENDPOINT_C}, env_file=env_file
    )
    assert load_s3_settings(sources, workers=4).endpoint_url == ENDPOINT_B


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-1"}, "eu-west-1"),
        ({"AWS_DEFAULT_REGION": "us-east-1"}, "us-east-1"),
        ({"AWS_REGION": "eu-central-1"}, "eu-central-1"),
        ({}, None),
    ],
)
def test_region_prefers_aws_region(environ: dict[str, str], expected: str | None) -> None:
    assert load_s3_settings(Sources({}, environ, None), workers=4).region == expected


def test_region_flag_beats_environment() -> None:
    sources = Sources({"region": "ap-south-1"}, {"AWS_REGION": "eu-west-1"}, None)
    assert load_s3_settings(sources, workers=4).region == "ap-south-1"


# --- required settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "flag", "env_name"),
    [
        ("bucket", "--bucket", "BUCKET_NAME"),
        ("prefix", "--prefix", "PATH_TO_SEARCH"),
        ("local_base_path", "--local-base-path", "LOCAL_BASE_PATH"),
    ],
)
def test_missing_required_setting_names_flag_and_env(
    tmp_path: Path, missing: str, flag: str, env_name: str
) -> None:
    error = config_error(tmp_path, without=missing)
    assert flag in str(error)
    assert env_name in str(error)


def test_explicit_empty_prefix_means_the_whole_bucket(tmp_path: Path) -> None:
    settings = load(tmp_path, flags={"prefix": ""})
    assert settings.prefix == ""


@pytest.mark.parametrize("bucket", ["s3://lake", "s3://lake/exports/2024/"])
def test_s3_url_as_bucket_is_refused(tmp_path: Path, bucket: str) -> None:
    error = config_error(tmp_path, flags={"bucket": bucket})
    assert "s3://" in str(error)


def test_bucket_with_a_path_is_refused(tmp_path: Path) -> None:
    error = config_error(tmp_path, flags={"bucket": "lake/exports"})
    assert "lake/exports" in str(error)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"AWS_ACCESS_KEY_ID": ACCESS_KEY}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": SECRET_KEY}, "AWS_ACCESS_KEY_ID"),
    ],
)
def test_only_one_of_the_key_pair_is_refused(
    tmp_path: Path, environ: dict[str, str], named: str
) -> None:
    error = config_error(tmp_path, environ=environ)
    assert named in str(error)
    assert SECRET_KEY not in str(error)


def test_key_pair_together_is_accepted(tmp_path: Path) -> None:
    settings = load(
        tmp_path, environ={"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    )
    assert (settings.s3.access_key_id, settings.s3.secret_access_key) == (ACCESS_KEY, SECRET_KEY)


# --- the settings file --------------------------------------------------------------------------


def test_explicit_env_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    with pytest.raises(ConfigError) as caught:
        Sources({}, {}, missing, env_file_explicit=True)
    assert str(missing) in str(caught.value)


def test_default_env_file_missing_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert not DEFAULT_ENV_FILE.exists()
    sources = Sources(required_flags(tmp_path), {}, DEFAULT_ENV_FILE)
    assert load_drain_settings(sources).bucket == "lake"


def test_default_env_file_is_read_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / ".env").write_text("bucket_name=from-default-file\n", encoding="utf-8")
    sources = Sources(required_flags(tmp_path, without="bucket"), {}, DEFAULT_ENV_FILE)
    assert load_drain_settings(sources).bucket == "from-default-file"


# --- bad values say where they came from --------------------------------------------------------


def test_the_documented_workers_message(tmp_path: Path) -> None:
    error = config_error(tmp_path, environ={"S3DRAIN_WORKERS": "abc"})
    assert str(error) == (
        "workers: 'abc' is not a whole number (from S3DRAIN_WORKERS in the environment)"
    )


@pytest.mark.parametrize("layer", ["flag", "environ", "dotenv"])
def test_bad_value_names_its_origin(tmp_path: Path, layer: str) -> None:
    env_file = tmp_path / "settings.env"
    error = config_error(
        tmp_path,
        flags={"workers": "abc"} if layer == "flag" else None,
        environ={"S3DRAIN_WORKERS": "abc"} if layer == "environ" else None,
        dotenv={"S3DRAIN_WORKERS": "abc"} if layer == "dotenv" else None,
    )
    origin = {
        "flag": "(from --workers)",
        "environ": "(from S3DRAIN_WORKERS in the environment)",
        "dotenv": f"(from S3DRAIN_WORKERS in {env_file})",
    }[layer]
    assert origin in str(error)


@pytest.mark.parametrize(
    ("name", "value", "flag"),
    [
        ("workers", "0", "--workers"),
        ("workers", "-1", "--workers"),
        ("workers", "100000", "--workers"),
        ("workers", "abc", "--workers"),
        ("workers", "2.5", "--workers"),
        ("part_size", "0", "--part-size"),
        ("part_size", "-5MiB", "--part-size"),
        ("part_size", "banana", "--part-size"),
        ("part_size", "10TiB", "--part-size"),
        ("min_age", "banana", "--min-age"),
        ("shard", "3/2", "--shard"),
        ("shard", "2/2", "--shard"),
        ("shard", "x", "--shard"),
        ("match", "md5", "--match"),
    ],
)
def test_bad_values_are_config_errors(tmp_path: Path, name: str, value: str, flag: str) -> None:
    error = config_error(tmp_path, flags={name: value})
    message = str(error)
    assert flag in message
    assert value in message


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("workers", "1", "workers", 1),
        ("workers", "32", "workers", 32),
        ("part_size", "16MiB", "part_size", 16 * MiB),
        ("part_size", "5MB", "part_size", 5_000_000),
        ("min_age", "15m", "min_age", 900.0),
        ("min_age", "0", "min_age", 0.0),
        ("shard", "1/4", "shard", Shard(1, 4)),
        ("shard", "0/1", "shard", Shard(0, 1)),
        ("match", "checksum", "match", "checksum"),
        ("match", "size", "match", "size"),
    ],
)
def test_good_values_are_converted(
    tmp_path: Path, name: str, value: str, attribute: str, expected: object
) -> None:
    assert getattr(load(tmp_path, flags={name: value}), attribute) == expected


def test_filters_keep_their_order(tmp_path: Path) -> None:
    settings = load(tmp_path, flags={"filters": [("exclude", "tmp/**"), ("include", "*.csv")]})
    assert [(rule.include, rule.pattern) for rule in settings.rules] == [
        (False, "tmp/**"),
        (True, "*.csv"),
    ]


# --- folders must not overlap -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "processed"),
    [
        ("base/x", "base/x"),  # equal
        ("base/raw", "base/raw/done"),  # raw contains processed
        ("base/processed/raw", None),  # raw inside processed
        ("base", "elsewhere/processed"),  # raw contains the state dir <base>/.s3drain
        ("base/.s3drain/raw", None),  # raw inside the state dir
        (None, "base"),  # processed contains raw and state
        ("base/raw/../processed", None),  # equal to processed once `..` is resolved
    ],
    ids=[
        "equal",
        "raw-contains-processed",
        "raw-inside-processed",
        "raw-contains-state",
        "raw-inside-state",
        "processed-contains-raw",
        "equal-via-dotdot",
    ],
)
def test_overlapping_folders_are_refused(
    tmp_path: Path, raw: str | None, processed: str | None
) -> None:
    flags: dict[str, object] = {}
    if raw is not None:
        flags["raw_dir"] = os.path.join(tmp_path, raw)
    if processed is not None:
        flags["processed_dir"] = os.path.join(tmp_path, processed)
    error = config_error(tmp_path, flags=flags)
    assert "folder" in str(error)


def test_raw_dir_that_is_a_symlink_to_processed_is_refused(tmp_path: Path) -> None:
    processed = tmp_path / "base" / "processed"
    processed.mkdir(parents=True)
    (tmp_path / "alias").symlink_to(processed)
    config_error(tmp_path, flags={"raw_dir": str(tmp_path / "alias")})


@pytest.mark.parametrize(
    ("raw", "processed"),
    [
        ("elsewhere/raw", None),
        ("base/raw2", "base/raw2-done"),  # a common string prefix is not nesting
        ("base/in", "base/out"),
    ],
)
def test_separate_folders_are_accepted(
    tmp_path: Path, raw: str | None, processed: str | None
) -> None:
    flags: dict[str, object] = {}
    if raw is not None:
        flags["raw_dir"] = os.path.join(tmp_path, raw)
    if processed is not None:
        flags["processed_dir"] = os.path.join(tmp_path, processed)
    settings = load(tmp_path, flags=flags)
    assert settings.raw_dir == tmp_path / (raw or "base/raw")


# --- secrets stay out of repr/str ---------------------------------------------------------------


def test_secrets_never_appear_in_repr_or_str(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        environ={
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": SESSION_TOKEN,
        },
    )
    assert settings.s3.secret_access_key == SECRET_KEY  # really loaded
    assert settings.s3.session_token == SESSION_TOKEN
    assert set(settings.s3.secrets()) == {SECRET_KEY, SESSION_TOKEN}
    for text in (repr(settings), str(settings), repr(settings.s3), str(settings.s3)):
        assert SECRET_KEY not in text
        assert SESSION_TOKEN not in text
        assert ACCESS_KEY not in text
    assert "lake" in repr(settings)  # the repr is not simply empty


def test_s3_settings_repr_hides_secrets_when_built_directly() -> None:
    s3 = S3Settings(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    assert SECRET_KEY not in repr(s3)
    assert ACCESS_KEY not in repr(s3)


# --- filters: glob semantics --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        # no '/': the name, in any folder
        ("*.csv", "a.csv", True),
        ("*.csv", "x/y/a.csv", True),
        ("*.csv", "a.csv.gz", False),
        ("*.csv", "x.csv/y.json", False),
        ("data.csv", "data.csv", True),
        ("data.csv", "sub/data.csv", True),
        ("data.csv", "sub/mydata.csv", False),
        ("a.csv", "abcsv", False),  # '.' is literal
        ("a+b (1).csv", "a+b (1).csv", True),  # regex characters are literal
        ("*", "a/b", True),
        # '*' stays inside one folder
        ("2024/*.csv", "2024/a.csv", True),
        ("2024/*.csv", "2024/x/a.csv", False),
        ("2024/*", "2024/a/b", False),
        # with '/': anchored to the path below the prefix
        ("2024/*.csv", "x/2024/a.csv", False),
        ("2024/a.csv", "2024/a.csv", True),
        ("2024/a.csv", "old/2024/a.csv", False),
        # '**' crosses folders
        ("2024/**.csv", "2024/x/y/a.csv", True),
        ("2024/**/*.csv", "2024/x/y/a.csv", True),
        ("logs/**", "logs/a/b/c", True),
        ("logs/**", "other/logs/a", False),
        ("**/*.csv", "x/y/a.csv", True),
        # '?' is one character, never '/'
        ("?.csv", "a.csv", True),
        ("?.csv", "ab.csv", False),
        ("a?b", "a/b", False),
        ("2024/a?b.csv", "2024/a/b.csv", False),
        # character classes
        ("[abc].csv", "b.csv", True),
        ("[abc].csv", "d.csv", False),
        ("[a-c].csv", "b.csv", True),
        ("[!abc].csv", "d.csv", True),
        ("[!abc].csv", "a.csv", False),
        ("x/[!abc].csv", "x/z.csv", True),
        # a class is one character of a name, so never '/'
        ("a[!x]b", "a/b", False),
        ("2024/a[!x]b.csv", "2024/a/b.csv", False),
    ],
)
def test_glob(pattern: str, path: str, expected: bool) -> None:
    rule = compile_rule(pattern, include=True)
    assert bool(rule.regex.match(path)) is expected


@pytest.mark.parametrize("pattern", ["", "a\x00b"])
def test_unusable_pattern(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        compile_rule(pattern, include=True)


@pytest.mark.parametrize(
    ("specs", "path", "expected"),
    [
        ((), "anything/at/all", True),
        ((("exclude", "*.tmp"),), "a.csv", True),
        ((("exclude", "*.tmp"),), "x/a.tmp", False),
        ((("include", "*.csv"),), "x/a.csv", True),
        ((("include", "*.csv"),), "x/a.json", False),  # any include: unmatched keys are left
        ((("exclude", "secret/**"), ("include", "*.csv")), "secret/a.csv", False),
        ((("exclude", "secret/**"), ("include", "*.csv")), "a.csv", True),
        ((("exclude", "secret/**"), ("include", "*.csv")), "a.json", False),
        ((("include", "*.csv"), ("exclude", "secret/**")), "secret/a.csv", True),  # first wins
        ((("include", "*.csv"), ("exclude", "secret/**")), "secret/a.json", False),
        ((("exclude", "*.tmp"), ("exclude", "*.bak")), "a.csv", True),
        ((("exclude", "*.tmp"), ("exclude", "*.bak")), "a.bak", False),
    ],
)
def test_rules_first_match_decides(
    specs: tuple[tuple[str, str], ...], path: str, expected: bool
) -> None:
    rules = [compile_rule(pattern, include=kind == "include") for kind, pattern in specs]
    assert rules_accept(rules, path) is expected


# --- shards -------------------------------------------------------------------------------------

# Expected shard per key, worked out with zlib.crc32(key.encode()) % N by hand once.
SHARD_OF: list[tuple[str, int, int]] = [
    ("a", 2, 1),
    ("a", 3, 0),
    ("a", 4, 3),
    ("a", 7, 4),
    ("exports/2024/a.csv", 2, 1),
    ("exports/2024/a.csv", 7, 6),
    ("données/été.csv", 2, 0),
    ("données/été.csv", 3, 1),
    ("x/y/z.parquet", 3, 2),
    ("key-0001", 4, 2),
]


@pytest.mark.parametrize(("key", "count", "index"), SHARD_OF)
def test_in_shard_is_stable(key: str, count: int, index: int) -> None:
    assert zlib.crc32(key.encode()) % count == index  # the table itself is right
    for candidate in range(count):
        assert in_shard(key, Shard(candidate, count)) is (candidate == index)


@pytest.mark.parametrize("count", [2, 3, 4, 7, 16])
def test_shards_partition_the_keys(count: int) -> None:
    keys = [f"exports/2024/{i % 37}/part-{i:05d}.csv" for i in range(10_000)]
    owners: Counter[int] = Counter()
    for key in keys:
        holders = [k for k in range(count) if in_shard(key, Shard(k, count))]
        assert len(holders) == 1, (key, holders)
        owners[holders[0]] += 1
    expected = len(keys) / count
    assert sorted(owners) == list(range(count))
    for shard_index, taken in owners.items():
        assert abs(taken - expected) < 0.1 * expected, (shard_index, taken)


@pytest.mark.parametrize("shard", [None, Shard(0, 1)])
def test_no_shard_takes_everything(shard: Shard | None) -> None:
    assert all(in_shard(f"k{i}", shard) for i in range(100))


@pytest.mark.parametrize(
    ("text", "expected"), [("0/4", Shard(0, 4)), ("3/4", Shard(3, 4)), ("0/1", Shard(0, 1))]
)
def test_parse_shard(text: str, expected: Shard) -> None:
    assert parse_shard(text) == expected
    assert str(parse_shard(text)) == text


@pytest.mark.parametrize("text", ["3/2", "2/2", "x", "1/0", "-1/2", "1/2/3", "", "1"])
def test_parse_shard_errors(text: str) -> None:
    with pytest.raises(ValueError, match=r"K/N|K must be"):
        parse_shard(text)


# --- skip_reason --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "min_age", "skipped"),
    [
        (59.0, 60.0, True),
        (0.0, 60.0, True),
        (60.0, 60.0, False),
        (3600.0, 60.0, False),
        (0.0, None, False),
    ],
)
def test_skip_reason_min_age(age: float, min_age: float | None, skipped: bool) -> None:
    reason = skip_reason("p/a.csv", "a.csv", age, rules=[], min_age=min_age, shard=None)
    if skipped:
        assert reason is not None
        assert "min-age" in reason
    else:
        assert reason is None


def test_skip_reason_shard() -> None:
    # crc32("a") % 2 == 1
    assert skip_reason("a", "a", 1e6, rules=[], min_age=None, shard=Shard(1, 2)) is None
    reason = skip_reason("a", "a", 1e6, rules=[], min_age=None, shard=Shard(0, 2))
    assert reason is not None
    assert "shard" in reason


def test_skip_reason_rules_use_the_relative_path() -> None:
    rules = [compile_rule("2024/*.csv", include=True)]
    taken = skip_reason(
        "exports/2024/a.csv", "2024/a.csv", 1e6, rules=rules, min_age=None, shard=None
    )
    assert taken is None
    left = skip_reason(
        "exports/2024/a.json", "2024/a.json", 1e6, rules=rules, min_age=None, shard=None
    )
    assert left is not None
    assert "include" in left or "exclude" in left


# --- units --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
        ("0", 0),
        ("512KiB", 512 * KiB),
        ("8MiB", 8 * MiB),
        ("8 MiB", 8 * MiB),
        ("8mib", 8 * MiB),
        ("8Mi", 8 * MiB),
        ("1.5GiB", 3 * GiB // 2),
        ("2GB", 2_000_000_000),
        ("16M", 16_000_000),
        ("10k", 10_000),
        ("1TiB", TiB),
        ("100B", 100),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "abc", "banana", "-5MiB", "5 XB", "1e3", "MiB", "1,000", "5 Mi B", "1.2.3"]
)
def test_parse_size_errors(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1d12h", 129600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1.5h", 5400.0),
        ("2H", 7200.0),
        ("0", 0.0),
    ],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "  ", "abc", "banana", "-5m", "5x", "m", "1h-5m", "1.5.2h"])
def test_parse_duration_errors(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("num_bytes", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (8 * MiB, "8.0 MiB"),
        (3 * GiB // 2, "1.5 GiB"),
        (5 * TiB, "5.0 TiB"),
        (2048 * TiB, "2048.0 TiB"),
    ],
)
def test_format_size(num_bytes: int, expected: str) -> None:
    assert format_size(num_bytes) == expected


@pytest.mark.parametrize("num_bytes", [0, 1023, KiB, 8 * MiB, 3 * GiB // 2, 5 * TiB])
def test_format_size_round_trips(num_bytes: int) -> None:
    assert parse_size(format_size(num_bytes)) == num_bytes


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0.0s"),
        (1.26, "1.3s"),
        (59.4, "59.4s"),
        (60, "1m00s"),
        (90, "1m30s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (3661, "1h01m"),
        (90000, "25h00m"),
    ],
)
def test_format_duration(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize("workers", [1, 16, 64])
def test_connection_pool_is_never_smaller_than_the_workers(tmp_path: Path, workers: int) -> None:
    """One client for all threads: with fewer pooled connections than workers, urllib3 would
    open and drop connections on every request ("Connection pool is full")."""
    settings = load(tmp_path, {"workers": str(workers)})
    assert settings.s3.max_pool_connections >= workers
    with mock_aws():
        client = make_client(settings.s3)
    assert vars(client.meta.config)["max_pool_connections"] == settings.s3.max_pool_connections
