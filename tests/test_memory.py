"""Memory stays flat: the real CLI in a subprocess reports its own peak RSS.

Issue 4's budget: 128 MiB for a 1 GiB object, and for 16 MiB-part downloads with 16 workers.

The peak is VmHWM from /proc/self/status, read as the CLI exits. Not ru_maxrss from wait4: that
keeps the high-water mark from before exec, i.e. the RSS of the (large) pytest process the
child was forked from; VmHWM belongs to the new address space and starts again at exec.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from s3drain.s3.client import S3Client
from tests.support.drainkit import bucket_keys
from tests.test_cli_e2e import BUCKET, PREFIX, ROOT, cli_env, drain_args

MiB = 1024 * 1024
RSS_LIMIT = 128 * MiB


def write_random_file(path: Path, size: int) -> str:
    digest = hashlib.md5()
    with open(path, "wb") as handle:
        for _ in range(size // MiB):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


# `python -m s3drain`, plus a report of the process's own peak RSS when it exits.
PROBE = """
import atexit, os, runpy, sys
def report():
    with open("/proc/self/status") as status:
        peak_kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["RSS_REPORT_FILE"], "w") as out:
        out.write(peak_kib)
atexit.register(report)
sys.argv = ["s3drain", *sys.argv[1:]]
runpy.run_module("s3drain", run_name="__main__", alter_sys=True)
"""


def peak_rss_of_cli(args: list[str], env: dict[str, str], report: Path) -> tuple[int, int, str]:
    """(exit code, peak RSS in bytes, stderr) of one CLI run."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**env, "RSS_REPORT_FILE": str(report)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    return result.returncode, int(report.read_text()) * 1024, result.stderr


def test_one_gib_object_stays_under_128_mib(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    source = tmp_path / "source.bin"
    expected = write_random_file(source, 1024 * MiB)
    s3.create_bucket(Bucket=BUCKET)
    with open(source, "rb") as body:
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}huge.bin", Body=body)
    source.unlink()
    base = tmp_path / "base"

    # Four workers keep moto's per-range cost (it copies the whole object for each ranged GET)
    # to seconds; the memory bound does not depend on the worker count, see the next test.
    code, rss, err = peak_rss_of_cli(
        [*drain_args(base), "--workers", "4"], cli_env(s3_url), tmp_path / "rss"
    )

    assert code == 0, err
    assert 30 * MiB < rss <= RSS_LIMIT, f"peak RSS {rss / MiB:.0f} MiB"  # >30: Python+botocore
    assert file_md5(base / "raw" / "huge.bin") == expected
    assert bucket_keys(s3) == set()


def test_16_mib_parts_with_16_workers_stay_under_128_mib(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    source = tmp_path / "source.bin"
    expected = write_random_file(source, 96 * MiB)
    s3.create_bucket(Bucket=BUCKET)
    for i in range(6):
        with open(source, "rb") as body:
            s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}big-{i}.bin", Body=body)
    base = tmp_path / "base"
    args = [
        *drain_args(base),
        "--workers",
        "16",
        "--part-size",
        "16MiB",
        "--multipart-threshold",
        "16MiB",
    ]

    code, rss, err = peak_rss_of_cli(args, cli_env(s3_url), tmp_path / "rss")

    assert code == 0, err
    assert 30 * MiB < rss <= RSS_LIMIT, f"peak RSS {rss / MiB:.0f} MiB"
    assert all(file_md5(base / "raw" / f"big-{i}.bin") == expected for i in range(6))
    assert bucket_keys(s3) == set()
