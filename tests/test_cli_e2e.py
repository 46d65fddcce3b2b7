"""The real `python -m s3drain` as a subprocess against moto's HTTP server (and, where a fault is
needed, the fault proxy in front of it): files on disk, what is left in the bucket, the audit
log, the output and the exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from s3drain.s3.client import S3Client
from tests.support.drainkit import bucket_keys, local_tree, place_copy
from tests.support.endpoints import S3Endpoint
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import MotoServer, free_port

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "lake"
PREFIX = "exports/2024/"
SECRET = "wJalrXUtnFEMI-very-secret-K7MDENG"


def cli_env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "S3DRAIN_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION="us-east-1",
        S3_ENDPOINT_URL=endpoint,
        S3_ADDRESSING_STYLE="path",
        NO_PROXY="*",
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: Mapping[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3drain", *args],
        env=dict(env),
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def drain_args(base: Path, *more: str) -> list[str]:
    return ["--bucket", BUCKET, "--prefix", PREFIX, "--local-base-path", str(base), *more]


def fill(s3: S3Client, objects: Mapping[str, bytes]) -> None:
    s3.create_bucket(Bucket=BUCKET)
    for key, body in objects.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def audit(base: Path) -> list[dict[str, Any]]:
    path = base / ".s3drain" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("s3drain: error: ")
    for word in words:
        assert word in result.stderr


# What each server lets the delete be, and so the requests per object: batched deletes where
# the per-key ETag of DeleteObjects is honoured (AWS; moto patched to do as AWS does), one
# DeleteObject + If-Match per object where only that is (moto ignoring that ETag:
# tests/support/moto_etag_blind.py).
GUARD_AND_REQUESTS = {"moto-aws-like": ("etag-batch", 1.01), "moto": ("if-match", 2.01)}


@pytest.mark.parametrize("s3_endpoint", sorted(GUARD_AND_REQUESTS), indirect=True)
def test_drains_1500_keys_with_json_summary(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:
    s3 = s3_endpoint.client()
    objects = {
        f"{PREFIX}d{i % 4}/f{i:04d}.csv": f"{i}\n".encode() * (i % 9 + 1) for i in range(1500)
    }
    fill(s3, objects)
    place_copy(tmp_path / "processed" / "d0" / "f0000.csv", objects[f"{PREFIX}d0/f0000.csv"])

    result = run_cli([*drain_args(tmp_path), "--json"], cli_env(s3_endpoint.url))

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 0 and summary["schema"] == 1
    assert summary["objects"]["downloaded"] == 1499 and summary["objects"]["processed"] == 1
    assert summary["deleted"] == 1500 and summary["left_in_s3"] == 0
    assert summary["requests"]["by_operation"]["ListObjectsV2"] == 2
    guard, per_object = GUARD_AND_REQUESTS[s3_endpoint.name]
    assert summary["delete_guard"] == guard and summary["delete_guard_exact"] is True
    assert summary["requests"]["total"] / 1500 <= per_object, summary["requests"]
    assert bucket_keys(s3) == set()
    tree = local_tree(tmp_path / "raw")
    assert len(tree) == 1499
    assert all(
        tree[k[len(PREFIX) :]] == v for k, v in objects.items() if not k.endswith("f0000.csv")
    )
    assert len(audit(tmp_path)) == 1500


def test_help_teaches(tmp_path: Path) -> None:
    result = run_cli(["--help"], os.environ)
    assert result.returncode == 0
    assert "drain" in result.stdout and "ingest" in result.stdout
    drain_help = run_cli(["drain", "--help"], os.environ).stdout
    for option in (
        "--bucket",
        "--prefix",
        "--local-base-path",
        "--dry-run",
        "--delete-mode",
        "--require-exact-delete",
        "--probe",
        "--max-streams",
        "--ledger-retention",
        "--workers",
        "--endpoint-url",
        "--env-file",
        "exit codes",
        "BUCKET_NAME",
        "within 30 s",
    ):
        assert option in drain_help
    assert "--match" not in drain_help  # still accepted for old cron lines, no longer taught


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (
            ["--prefix", "x/", "--local-base-path", "/tmp/x"],
            2,
            ["bucket is not set", "BUCKET_NAME"],
        ),
        (["--bucket", "lake", "--local-base-path", "/tmp/x"], 2, ["prefix is not set"]),
        (["--bucket", "lake", "--prefix", "x/"], 2, ["local base path is not set"]),
        (
            ["--bucket", "s3://lake/x", "--prefix", "x/", "--local-base-path", "/tmp/x"],
            2,
            ["s3://"],
        ),
        (
            ["--bucket", "lake", "--prefix", "x/", "--local-base-path", "/tmp/x", "--workers", "0"],
            2,
            ["workers"],
        ),
        (
            [
                "--bucket",
                "lake",
                "--prefix",
                "x/",
                "--local-base-path",
                "/tmp/x",
                "--part-size",
                "banana",
            ],
            2,
            ["part size"],
        ),
        (
            [
                "--bucket",
                "lake",
                "--prefix",
                "x/",
                "--local-base-path",
                "/tmp/x",
                "--env-file",
                "/nope.env",
            ],
            2,
            ["/nope.env"],
        ),
    ],
)
def test_bad_settings_get_one_line_and_exit_2(args: list[str], code: int, words: list[str]) -> None:
    result = run_cli(args, cli_env("http://127.0.0.1:9"))
    assert_clean_error(result, code, *words)


def test_env_file_with_seed_names(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    fill(s3, {f"{PREFIX}a.csv": b"a"})
    env_file = tmp_path / "seed.env"
    env_file.write_text(
        f"bucket_name={BUCKET}\npath_to_search={PREFIX}\nlocal_base_path={tmp_path / 'base'}\n"
        f"aws_access_key_id=testing\naws_secret_access_key={SECRET}\nS3_ENDPOINT_URL={s3_url}\n"
    )
    env = {k: v for k, v in cli_env(s3_url).items() if not k.startswith(("AWS_", "S3_"))}

    result = run_cli(["--env-file", str(env_file)], env)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "base" / "raw" / "a.csv").read_bytes() == b"a"


def test_make_drain_runs_with_the_settings_file(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    """The Makefile target a nightly ETL puts before its own (`nightly: drain etl`)."""
    fill(s3, {f"{PREFIX}a.csv": b"a", f"{PREFIX}x/b.csv": b"bb"})
    env_file = tmp_path / "nightly.env"
    env_file.write_text(
        f"BUCKET_NAME={BUCKET}\nPATH_TO_SEARCH={PREFIX}\nLOCAL_BASE_PATH={tmp_path / 'base'}\n"
        f"AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY={SECRET}\nS3_ENDPOINT_URL={s3_url}\n"
    )
    env = {k: v for k, v in cli_env(s3_url).items() if not k.startswith(("AWS_", "S3_"))}

    # -o: the virtual environment counts as built; PY: the interpreter running these tests.
    make = ["make", "-s", "-o", ".venv/.installed", "drain"]
    result = subprocess.run(
        [*make, f"ENV_FILE={env_file}", f"PY={sys.executable}"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert local_tree(tmp_path / "base" / "raw") == {"a.csv": b"a", "x/b.csv": b"bb"}
    assert bucket_keys(s3) == set()
    assert SECRET not in result.stdout + result.stderr


def test_missing_bucket(tmp_path: Path, s3_url: str) -> None:
    result = run_cli(drain_args(tmp_path / "b"), cli_env(s3_url))
    assert_clean_error(result, 2, "does not exist", BUCKET)


def test_missing_credentials(tmp_path: Path, s3_url: str) -> None:
    # No keys anywhere: not in the environment, no ~/.aws, no instance role to ask.
    env = {k: v for k, v in cli_env(s3_url).items() if not k.startswith("AWS_ACCESS_KEY_ID")}
    env.pop("AWS_SECRET_ACCESS_KEY")
    env.update(HOME=str(tmp_path / "home"), AWS_EC2_METADATA_DISABLED="true")

    result = run_cli(drain_args(tmp_path / "base"), env)

    assert_clean_error(result, 2, "no AWS credentials found", "AWS_ACCESS_KEY_ID")
    assert not (tmp_path / "base").exists()


def test_unreachable_endpoint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli([*drain_args(tmp_path), "--max-attempts", "2"], cli_env(url))
    assert_clean_error(result, 2, "cannot reach S3", "--endpoint-url")


def test_rejected_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")  # moto checks keys from now on
    with MotoServer() as server:
        result = run_cli(drain_args(tmp_path), cli_env(server.url))
    assert_clean_error(result, 2, "access key")
    assert SECRET not in result.stderr + result.stdout


def test_unwritable_local_path(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    fill(s3, {f"{PREFIX}a.csv": b"a"})
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli(drain_args(blocker / "base"), cli_env(s3_url))
    assert_clean_error(result, 2, str(blocker))
    assert bucket_keys(s3) == {f"{PREFIX}a.csv"}


def test_overlapping_run_exits_3_and_changes_nothing(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, {f"{PREFIX}{i:03d}.csv": b"x" * 10 for i in range(60)})
    with FaultProxy(s3_url, latency=0.1) as slow:
        first = subprocess.Popen(
            [sys.executable, "-m", "s3drain", *drain_args(tmp_path), "--workers", "2", "-q"],
            env=cli_env(slow.url),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lock = tmp_path / ".s3drain" / "lock"
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        before = set(local_tree(tmp_path / "raw"))

        second = run_cli(drain_args(tmp_path), cli_env(s3_url))

        assert_clean_error(second, 3, "another s3drain run", str(first.pid))
        assert set(local_tree(tmp_path / "raw")) >= before
        assert first.wait(timeout=120) == 0
    assert bucket_keys(s3) == set()


def test_transient_faults_are_retried(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    objects = {f"{PREFIX}{i:03d}.csv": os.urandom(2000 + i) for i in range(120)}
    fill(s3, objects)
    with FaultProxy(
        s3_url,
        fault_rate=0.25,
        seed=7,
        fault_kinds=("503", "500", "502", "504", "reset_before", "truncate"),
    ) as proxy:
        result = run_cli(
            [*drain_args(tmp_path), "--json", "--max-attempts", "10"], cli_env(proxy.url)
        )
        injected = sum(proxy.fault_counts().values())

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert injected > 20 and summary["retries"] >= injected - 5
    assert bucket_keys(s3) == set()
    assert local_tree(tmp_path / "raw") == {k[len(PREFIX) :]: v for k, v in objects.items()}


def test_permanent_error_leaves_that_object(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    fill(s3, {f"{PREFIX}a.csv": b"a", f"{PREFIX}b.csv": b"b"})
    s3.put_object(
        Bucket=BUCKET, Key=f"{PREFIX}frozen.csv", Body=b"in glacier", StorageClass="GLACIER"
    )

    result = run_cli(drain_args(tmp_path), cli_env(s3_url))

    assert result.returncode == 1, result.stderr
    assert bucket_keys(s3) == {f"{PREFIX}frozen.csv"}
    assert "failed: exports/2024/frozen.csv" in result.stderr
    failed = [line for line in audit(tmp_path) if line["status"] == "failed"]
    assert len(failed) == 1 and "InvalidObjectState" in failed[0]["detail"]
    assert "1 object left in S3" in result.stdout


def test_object_overwritten_between_listing_and_delete(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    fill(s3, {f"{PREFIX}a.csv": b"version one", f"{PREFIX}b.csv": b"b"})
    overwritten: list[str] = []

    def overwrite(info: RequestInfo) -> None:
        if info.op == "DeleteObject" and info.key == f"{PREFIX}a.csv" and not overwritten:
            overwritten.append(info.key)
            s3.put_object(Bucket=BUCKET, Key=info.key, Body=b"version two, written mid-run")

    with FaultProxy(s3_url, before_forward=overwrite) as proxy:
        result = run_cli([*drain_args(tmp_path), "--delete-mode", "single"], cli_env(proxy.url))

    assert result.returncode == 1, result.stderr
    assert overwritten
    body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}a.csv")["Body"].read()
    assert body == b"version two, written mid-run"
    assert (tmp_path / "raw" / "a.csv").read_bytes() == b"version one"
    line = next(x for x in audit(tmp_path) if x["key"] == f"{PREFIX}a.csv")
    assert line["status"] == "changed" and line["deleted"] is False


def test_hostile_keys_end_to_end(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    hostile = [
        f"{PREFIX}../escape",
        f"{PREFIX}a/../../b",
        f"{PREFIX}/abs",
        f"{PREFIX}a//b",
        f"{PREFIX}{'x' * 300}",
        f"{PREFIX}tab\tkey",  # moto's HTTP server cannot hold a newline; in-process tests do
    ]
    fill(s3, {key: b"h" for key in hostile} | {f"{PREFIX}fine.csv": b"f"})

    result = run_cli(drain_args(tmp_path / "base"), cli_env(s3_url))

    assert result.returncode == 1
    assert bucket_keys(s3) == set(hostile)
    assert {p.name for p in tmp_path.iterdir()} == {"base"}
    assert local_tree(tmp_path / "base" / "raw") == {"fine.csv": b"f"}


def test_verbose_run_never_prints_the_secret(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    fill(s3, {f"{PREFIX}a.csv": b"a"})
    with FaultProxy(s3_url, fault_rate=0.5, seed=3, fault_kinds=("503",)) as proxy:
        result = run_cli([*drain_args(tmp_path), "-vv", "--max-attempts", "12"], cli_env(proxy.url))
    assert result.returncode == 0, result.stderr
    assert "retry" in result.stderr
    everything = result.stdout + result.stderr + (tmp_path / ".s3drain" / "audit.jsonl").read_text()
    assert SECRET not in everything


def test_sigint_finishes_in_flight_and_reports(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    objects = {f"{PREFIX}{i:03d}.csv": os.urandom(500) for i in range(200)}
    fill(s3, objects)
    with FaultProxy(s3_url, latency=0.05) as slow:
        run = subprocess.Popen(
            [sys.executable, "-m", "s3drain", *drain_args(tmp_path), "--workers", "4"],
            env=cli_env(slow.url),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        # Count names only: reading files of a live run races with its temp files' renames.
        while len(list((tmp_path / "raw").glob("*.csv"))) < 10:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)

    assert run.returncode == 130, err
    assert "stopping" in err and "interrupted" in out
    placed = local_tree(tmp_path / "raw")
    assert not [name for name in placed if ".s3drain-" in name]
    remaining = bucket_keys(s3)
    assert remaining, "the run should have stopped before the end"
    assert all(placed[k[len(PREFIX) :]] == v for k, v in objects.items() if k not in remaining)

    rerun = run_cli(drain_args(tmp_path), cli_env(s3_url))
    assert rerun.returncode == 0, rerun.stderr
    assert bucket_keys(s3) == set()
    assert local_tree(tmp_path / "raw") == {k[len(PREFIX) :]: v for k, v in objects.items()}
    deleted = [line["key"] for line in audit(tmp_path) if line["deleted"]]
    assert sorted(deleted) == sorted(objects)  # each object's delete recorded exactly once


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "s3drain"
    assert script.exists()
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("s3drain ")
