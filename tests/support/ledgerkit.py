"""Helpers for the ledger's end-to-end scenarios: the real CLI run against moto's server, what is
left in the bucket (by bytes, not by name), what sits under raw/ and processed/, each run's audit
lines, and what an ETL does to the files between runs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tests.support.drainkit import local_tree
from tests.support.mounts import takes_user_xattrs
from tests.support.server import S3Client, s3_client
from tests.test_cli_e2e import BUCKET, PREFIX, cli_env, drain_args, run_cli

LEDGER = Path(".s3drain") / "state.db"
# The delete statuses: the first three delete from S3 (when the delete was confirmed).
DELIVERED = ("downloaded", "processed", "present")


@dataclass(frozen=True)
class Drained:
    """One CLI drain: exit code, its --json summary, stderr, and this run's audit lines by key."""

    code: int
    summary: dict[str, Any]
    stderr: str
    lines: dict[str, dict[str, Any]]

    def status(self, rel: str) -> str:
        return str(self.lines[PREFIX + rel]["status"])

    def deleted(self, rel: str) -> bool:
        return bool(self.lines[PREFIX + rel]["deleted"])

    def gets(self) -> int:
        return int(self.summary["requests"]["by_operation"].get("GetObject", 0))


def audit_lines(base: Path) -> list[dict[str, Any]]:
    path = base / ".s3drain" / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def drain_cli(
    base: Path,
    url: str,
    *more: str,
    command: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> Drained:
    """`python -m s3drain --json ...` (behind `command`, e.g. faketime, when given); the audit
    lines this run added, last line per key."""
    before = len(audit_lines(base))
    args = [*drain_args(base), "--json", *more]
    environment = dict(env or cli_env(url))
    if command:
        result = subprocess.run(
            [*command, sys.executable, "-m", "s3drain", *args],
            env=environment,
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    else:
        result = run_cli(args, environment, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    try:
        summary = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"no JSON summary:\n{result.stdout}\n{result.stderr}") from None
    lines = {line["key"]: line for line in audit_lines(base)[before:]}
    return Drained(result.returncode, summary, result.stderr, lines)


def body(s3: S3Client, rel: str) -> bytes | None:
    """The bytes S3 holds at PREFIX + rel, or None where nothing is there."""
    try:
        data: bytes = s3.get_object(Bucket=BUCKET, Key=PREFIX + rel)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return data


def etag(s3: S3Client, rel: str) -> str:
    return str(s3.head_object(Bucket=BUCKET, Key=PREFIX + rel)["ETag"]).strip('"')


def put(s3: S3Client, rel: str, data: bytes) -> str:
    """A single-part upload; returns its ETag (the MD5 of the bytes)."""
    return str(s3.put_object(Bucket=BUCKET, Key=PREFIX + rel, Body=data)["ETag"]).strip('"')


def put_multipart(url: str, rel: str, data: bytes) -> str:
    """A one-part multipart upload with no checksum of any kind: its ETag is `<hex>-1`, and
    nothing but the bytes themselves can prove a local copy of it."""
    client = s3_client(
        url,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    try:
        key = PREFIX + rel
        upload = client.create_multipart_upload(Bucket=BUCKET, Key=key)
        part = client.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=data
        )
        done = client.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
    finally:
        client.close()
    tag = str(done["ETag"]).strip('"')
    assert tag.endswith("-1"), tag
    return tag


class Versions:
    """Every version the test uploads, by ETag, so that each confirmed delete can be checked
    against the bytes it claims were delivered."""

    def __init__(self, s3: S3Client, url: str) -> None:
        self.s3 = s3
        self.url = url
        self.by_etag: dict[str, bytes] = {}
        self._delivered: set[tuple[str, str]] = set()  # (key, ETag) seen delivered
        self._last_put = 0.0

    def put(self, rel: str, data: bytes) -> str:
        tag = put(self.s3, rel, data)
        self.by_etag[tag] = data
        self._last_put = time.time()
        return tag

    def put_multipart(self, rel: str, data: bytes) -> str:
        tag = put_multipart(self.url, rel, data)
        self.by_etag[tag] = data
        self._last_put = time.time()
        return tag

    def next_second(self) -> None:
        """S3's LastModified has whole seconds: a re-upload is a new object to s3drain only
        once it is stamped later than the upload before it (a re-upload of the same bytes
        within the same second is the delivered object itself, as far as anyone can tell)."""
        while int(time.time()) <= int(self._last_put):
            time.sleep(0.05)

    def check(self, base: Path, run: Drained) -> None:
        """No object left S3 unless its exact bytes were delivered: each delete this run
        confirmed names a file that holds that version's bytes; one decided from the ledger
        alone (its file moved on since) needs a delivery of that version that an earlier check
        saw, or a checksum the ledger recorded of those very bytes. Call it after every run."""
        rows = ledger_rows(base, "state = 'delivered'")
        for key, line in run.lines.items():
            if line["status"] not in DELIVERED:
                assert not line["deleted"], line
                continue
            expected = self.by_etag[line["etag"]]
            path = Path(line["local_path"] or "")
            holds = path.is_file() and path.read_bytes() == expected
            if line["deleted"] and line["verified"] == "ledger" and not holds:
                mine = [r for r in rows if (r["key"], r["etag"]) == (key, line["etag"])]
                assert (key, line["etag"]) in self._delivered or any(
                    checksum_of(expected, r["checksums"]) for r in mine
                ), f"{key} deleted on the ledger's word, but no delivery of its bytes is known"
            else:
                assert holds, f"{key} {line['status']}; {path} does not hold its bytes"
            self._delivered.add((key, line["etag"]))


def checksum_of(data: bytes, recorded: str | None) -> bool:
    """Is `recorded` (the ledger's `md5:<hex>` / `crc32:<b64>`) a checksum of `data`?"""
    if not recorded:
        return False
    kind, _, value = recorded.partition(":")
    if kind == "md5":
        return hashlib.md5(data).hexdigest() == value
    if kind == "crc32":
        return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode() == value
    return False


def files(base: Path, folder: str) -> dict[str, bytes]:
    """Every file under base/folder by relative path, s3drain's hidden temp files left out
    (a test that cares about those looks itself)."""
    return {
        rel: data
        for rel, data in local_tree(base / folder).items()
        if not os.path.basename(rel).startswith(".s3drain-")
    }


def ledger_query(base: Path, sql: str) -> list[sqlite3.Row]:
    """Read the ledger with sqlite3 itself (not s3drain's code); [] where there is none."""
    path = base / LEDGER
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql))


def ledger_rows(base: Path, where: str = "1 = 1") -> list[dict[str, Any]]:
    return [dict(r) for r in ledger_query(base, f"SELECT * FROM deliveries WHERE {where}")]  # noqa: S608


def same_size_other_bytes(data: bytes) -> bytes:
    fixed = bytes(b ^ 0x20 for b in data)
    assert len(fixed) == len(data) and fixed != data
    return fixed


def assert_base_on(base: Path, kind: str) -> None:
    """The mount really is what the test is named for (bindfs kept --xattr-none)."""
    base.mkdir(parents=True, exist_ok=True)
    assert takes_user_xattrs(base) is (kind == "native")


# -- what an ETL does to a delivered file --------------------------------------------------------


def etl_move(base: Path, rel: str) -> None:
    """`mv raw/x processed/x`: the same file (inode), now in processed/."""
    target = base / "processed" / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(base / "raw" / rel, target)


def etl_copy(base: Path, rel: str, *, remove_raw: bool, mtime: float | None = None) -> None:
    """`cp raw/x processed/x` (a new file with today's mtime, no xattrs), then `rm raw/x` or not.
    `mtime`: what a host clock that is off would have stamped on the copy."""
    target = base / "processed" / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base / "raw" / rel, target)
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    if remove_raw:
        (base / "raw" / rel).unlink()


def etl_rewrite(base: Path, rel: str, data: bytes) -> None:
    """Rewrite the raw file in place: same file (inode), same size, the ETL's own bytes."""
    path = base / "raw" / rel
    assert len(data) == path.stat().st_size
    with path.open("r+b") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def etl_delete(base: Path, rel: str) -> None:
    (base / "raw" / rel).unlink()


__all__ = ["BUCKET", "PREFIX", "cli_env"]
