"""s3drain itself, as the real `python -m s3drain`, against each S3 server of the suite: moto,
moto patched to honour DeleteObjects' per-key ETag as AWS does, and LocalStack's S3.

Each test runs once per server (``s3_endpoint``) and asserts what an operator would see: files
on disk (bytes), what is left in the bucket, the audit lines, the exit code and the ``--json``
summary. The delete guard differs per server (docs/compatibility.md):

    moto            if-match      DeleteObject + If-Match (its DeleteObjects ignores the ETag)
    moto-aws-like   etag-batch    DeleteObjects with each key's ETag
    LocalStack      head-checked  (unversioned) 501 to If-Match, per-key ETag ignored: a HEAD +
                                  If-Match just before an unconditional delete; NOT exact
                    version-id    (versioned) the verified version, removed for good

Moments inside a run (an overwrite just before the GET, just before the delete) are injected by
a `FaultProxy` between the CLI and the server, whose `before_forward` hook uploads a new version
the moment the request arrives, before the server sees it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from s3drain.s3.probe import PROBE_NAME
from tests.support.drainkit import bucket_keys, local_tree
from tests.support.endpoints import S3Endpoint
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import S3Client
from tests.test_cli_e2e import BUCKET, PREFIX, audit, cli_env, drain_args, run_cli

MiB = 1024 * 1024
HEAD_CHECKED_WARNING = "narrows the race with an overwrite to milliseconds but cannot close it"
VERSION_ID_WARNING = "remove that version for good"


@dataclass(frozen=True)
class Expect:
    """What s3drain makes of a server: its guard, whether it is exact, the probe's answers, and
    the once-per-run warning a guard that needs one prints."""

    guard: str
    exact: bool
    probe: str
    warning: str | None = None


_MOTO_PROBE = "DeleteObject + If-Match honoured, DeleteObjects + ETag ignored"
_AWS_LIKE_PROBE = "DeleteObject + If-Match honoured, DeleteObjects + ETag honoured"
_LOCALSTACK_PROBE = "DeleteObject + If-Match not-implemented, DeleteObjects + ETag ignored"
EXPECT = {
    ("moto", False): Expect("if-match", True, _MOTO_PROBE),
    ("moto", True): Expect("if-match", True, _MOTO_PROBE),
    ("moto-aws-like", False): Expect("etag-batch", True, _AWS_LIKE_PROBE),
    ("moto-aws-like", True): Expect("etag-batch", True, _AWS_LIKE_PROBE),
    ("localstack", False): Expect("head-checked", False, _LOCALSTACK_PROBE, HEAD_CHECKED_WARNING),
    ("localstack", True): Expect("version-id", True, _LOCALSTACK_PROBE, VERSION_ID_WARNING),
}

VERSIONING = pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])


def new_bucket(s3: S3Client, versioned: bool = False) -> None:
    s3.create_bucket(Bucket=BUCKET)
    if versioned:
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})


def put(s3: S3Client, objects: Mapping[str, bytes]) -> dict[str, str]:
    """Upload; return each key's VersionId (None in an unversioned bucket)."""
    return {
        key: s3.put_object(Bucket=BUCKET, Key=key, Body=body).get("VersionId")
        for key, body in objects.items()
    }


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def body_of(s3: S3Client, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


def summary_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def by_key(base: Path) -> dict[str, dict[str, Any]]:
    """The audit log, one line per key (a key drained twice would fail the test)."""
    lines = audit(base)
    keyed = {line["key"]: line for line in lines}
    assert len(keyed) == len(lines), "a key has more than one audit line"
    return keyed


def assert_guard(summary: Mapping[str, Any], stderr: str, expect: Expect) -> None:
    assert summary["delete_guard"] == expect.guard
    assert summary["delete_guard_exact"] is expect.exact
    assert summary["probe"].startswith(expect.probe), summary["probe"]
    if expect.warning is None:
        assert "s3drain: warning" not in stderr, stderr
    else:
        assert stderr.count(expect.warning) == 1, stderr  # once per run, not per object


def probe_traces(s3: S3Client) -> list[str]:
    """Versions or delete markers the probe left in the bucket (it must leave none)."""
    found: list[str] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        for kind in ("Versions", "DeleteMarkers"):
            found += [f"{kind}: {v['Key']}" for v in page.get(kind, []) if PROBE_NAME in v["Key"]]
    return found


def current_versions(s3: S3Client, key: str) -> list[dict[str, Any]]:
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    return [
        v
        for kind in ("Versions", "DeleteMarkers")
        for v in versions.get(kind, [])
        if v["Key"] == key and v["IsLatest"]
    ]


# -- drain, processed, present, odd keys -------------------------------------------------------

# Keys that need escaping somewhere (URL, XML, the file system) yet map to a file.
ODD_BUT_FINE = [
    "with space.csv",
    "plus+sign",
    "percent%2F",
    "q?x=1&y",
    "hash#frag",
    "ünï/cødé ✓",
    "amp&lt;",
    "deep/er/still/x.csv",
]


def test_drain_processed_present_and_odd_keys(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:
    s3 = s3_endpoint.client()
    new_bucket(s3)
    downloads = {f"{PREFIX}{rel}": f"bytes of {rel}\n".encode() * 3 for rel in ODD_BUT_FINE}
    done, here = f"{PREFIX}done/by-etl.csv", f"{PREFIX}here.csv"
    objects = downloads | {done: b"moved on by the ETL\n", here: b"downloaded before\n"}
    put(s3, objects)
    # Copies made by someone else: s3drain must prove them by content (MD5 or CRC32).
    (tmp_path / "processed" / "done").mkdir(parents=True)
    (tmp_path / "processed" / "done" / "by-etl.csv").write_bytes(objects[done])
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "here.csv").write_bytes(objects[here])

    result = run_cli([*drain_args(tmp_path), "--json"], cli_env(s3_endpoint.url))

    assert result.returncode == 0, result.stderr
    expect = EXPECT[(s3_endpoint.name, False)]
    summary = summary_of(result)
    assert_guard(summary, result.stderr, expect)
    assert summary["objects"]["downloaded"] == len(downloads)
    assert summary["objects"]["processed"] == 1 and summary["objects"]["present"] == 1
    assert summary["deleted"] == len(objects) and summary["left_in_s3"] == 0
    assert bucket_keys(s3) == set()
    in_raw = {k[len(PREFIX) :]: v for k, v in objects.items() if k != done}
    assert local_tree(tmp_path / "raw") == in_raw
    assert (tmp_path / "processed" / "done" / "by-etl.csv").read_bytes() == objects[done]
    lines = by_key(tmp_path)
    assert set(lines) == set(objects)
    for key, line in lines.items():
        assert line["deleted"] is True and line["delete_guard"] == expect.guard, line
        status = {done: "processed", here: "present"}.get(key, "downloaded")
        assert line["status"] == status, line
        if status == "downloaded":
            # botocore uploaded each with a CRC32, which the GET names and s3drain checked.
            assert line["verified"] == "crc32", line
            assert line["checksums"] == f"crc32:{crc32(objects[key])}", line
        else:
            # A single-part ETag is the MD5: the local copy's MD5 proves it, no HEAD needed.
            assert line["verified"] == "md5", line
            assert line["checksums"] == f"md5:{hashlib.md5(objects[key]).hexdigest()}", line
    assert lines[done]["local_path"] == str(tmp_path / "processed" / "done" / "by-etl.csv")
    assert lines[here]["local_path"] == str(tmp_path / "raw" / "here.csv")


# Keys s3drain must refuse (left in S3, exit 1) rather than normalise into another file.
REFUSED = ["../escape", "a/../../b", "/abs", "a//b", "k" * 300, "tab\tkey"]


def test_odd_keys_that_cannot_map_to_a_file_are_refused(
    tmp_path: Path, s3_endpoint: S3Endpoint
) -> None:
    s3 = s3_endpoint.client()
    new_bucket(s3)
    refused = {f"{PREFIX}{rel}": b"h" for rel in REFUSED}
    # `a` and `a/b` cannot both be files: whichever lands first (workers race) takes the path,
    # the other stays in S3 (refused, or a conflict with the folder or file that appeared).
    pair = {f"{PREFIX}a": b"file a", f"{PREFIX}a/b": b"file a/b"}
    fine = {f"{PREFIX}fine.csv": b"f", f"{PREFIX}folder/": b""}
    put(s3, refused | pair | fine)

    result = run_cli([*drain_args(tmp_path / "base"), "--json"], cli_env(s3_endpoint.url))

    assert result.returncode == 1, result.stderr
    summary = summary_of(result)
    assert summary["objects"]["refused"] + summary["objects"]["conflict"] == len(refused) + 1
    assert summary["objects"]["skipped"] == 1  # the zero-byte folder marker, left alone
    left = bucket_keys(s3) - set(refused) - {f"{PREFIX}folder/"}
    assert len(left) == 1 and left < set(pair)
    (landed,) = set(pair) - left
    assert {p.name for p in tmp_path.iterdir()} == {"base"}  # nothing escaped the base
    raw = {landed[len(PREFIX) :]: pair[landed], "fine.csv": b"f"}
    assert local_tree(tmp_path / "base" / "raw") == raw
    lines = by_key(tmp_path / "base")
    for key in refused:
        assert lines[key]["status"] == "refused" and lines[key]["deleted"] is False
        assert lines[key]["detail"], lines[key]
    (other,) = left
    assert lines[other]["status"] in ("refused", "conflict") and not lines[other]["deleted"]
    assert lines[landed]["status"] == "downloaded" and lines[landed]["deleted"]


def test_conflict_leaves_the_object_and_the_local_file(
    tmp_path: Path, s3_endpoint: S3Endpoint
) -> None:
    s3 = s3_endpoint.client()
    new_bucket(s3)
    put(s3, {f"{PREFIX}a.csv": b"what S3 holds", f"{PREFIX}b.csv": b"b"})
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.csv").write_bytes(b"someone else's a.csv")  # same name, other bytes

    result = run_cli([*drain_args(tmp_path), "--json"], cli_env(s3_endpoint.url))

    assert result.returncode == 1, result.stderr
    summary = summary_of(result)
    assert summary["objects"]["conflict"] == 1 and summary["objects"]["downloaded"] == 1
    assert bucket_keys(s3) == {f"{PREFIX}a.csv"}
    assert body_of(s3, f"{PREFIX}a.csv") == b"what S3 holds"
    assert local_tree(tmp_path / "raw") == {"a.csv": b"someone else's a.csv", "b.csv": b"b"}
    line = by_key(tmp_path)[f"{PREFIX}a.csv"]
    assert line["status"] == "conflict" and line["deleted"] is False


# -- overwrites at the worst moments -------------------------------------------------------------


class Overwriter:
    """A `before_forward` hook: the first time `when(request)` holds, upload `body` at `key`
    straight to the server, before the request that triggered it reaches the server."""

    def __init__(
        self, s3: S3Client, key: str, body: bytes, when: Callable[[RequestInfo, bool], bool]
    ) -> None:
        self.s3, self.key, self.body, self.when = s3, key, body, when
        self.got_key = False  # has the run fetched the key yet?
        self.fired: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, info: RequestInfo) -> None:
        with self.lock:
            if self.fired:
                return
            if self.when(info, self.got_key):
                self.fired.append(info.op)
                self.s3.put_object(Bucket=BUCKET, Key=self.key, Body=self.body)
            if info.op == "GetObject" and info.key == self.key:
                self.got_key = True


def test_overwrite_just_before_the_get_is_not_downloaded(
    tmp_path: Path, s3_endpoint: S3Endpoint
) -> None:
    """Listed as v1, v2 uploaded as the GET arrives: the GET's If-Match on v1's ETag fails (all
    three servers honour it), the object is `changed` and v2 stays; nothing lands locally."""
    s3 = s3_endpoint.client()
    new_bucket(s3)
    key = f"{PREFIX}a.csv"
    put(s3, {key: b"v1", f"{PREFIX}b.csv": b"b"})
    hook = Overwriter(
        s3, key, b"v2, uploaded mid-run", lambda i, _: i.op == "GetObject" and i.key == key
    )

    with FaultProxy(s3_endpoint.url, before_forward=hook) as proxy:
        result = run_cli([*drain_args(tmp_path), "--json"], cli_env(proxy.url))

    assert hook.fired == ["GetObject"]
    assert result.returncode == 1, result.stderr
    summary = summary_of(result)
    assert summary["objects"]["changed"] == 1 and summary["objects"]["downloaded"] == 1
    assert summary["delete_guard"] == EXPECT[(s3_endpoint.name, False)].guard
    assert bucket_keys(s3) == {key}
    assert body_of(s3, key) == b"v2, uploaded mid-run"
    assert local_tree(tmp_path / "raw") == {"b.csv": b"b"}  # no a.csv, no temp file
    line = by_key(tmp_path)[key]
    assert line["status"] == "changed" and line["deleted"] is False


def _reaches_the_delete(key: str) -> Callable[[RequestInfo, bool], bool]:
    """The request that decides a.csv's delete, after its download: DeleteObject of the key
    (if-match), a DeleteObjects (etag-batch, version-id: the probe's come before any GET, so the
    first one after the key's GET is the run's), or the HEAD of head-checked."""

    def when(info: RequestInfo, got_key: bool) -> bool:
        if not got_key or PROBE_NAME in info.key:
            return False
        if info.op == "DeleteObjects":
            return True
        return info.op in ("DeleteObject", "HeadObject") and info.key == key

    return when


@VERSIONING
def test_overwrite_just_before_the_delete(
    tmp_path: Path, s3_endpoint: S3Endpoint, versioned: bool
) -> None:
    """v1 downloaded and verified; v2 uploaded just before the request that deletes v1 (or, on
    head-checked, the HEAD before it) reaches the server. Every guard must leave v2 current.

    - if-match, etag-batch: the server refuses the delete (412 / PreconditionFailed): `changed`.
      On moto this is the default mode (if-match), which used to delete v2.
    - head-checked (LocalStack, unversioned): the HEAD + If-Match answers 412: `changed`.
      What no client can close is an upload landing between that HEAD and the unconditional
      DELETE right after it (milliseconds): that v2 would be deleted without being downloaded.
      This test covers the moment before the HEAD only; the run's warning and
      `delete_guard_exact: false` say the rest.
    - version-id (LocalStack, versioned): the delete names v1's VersionId, so v1 is removed for
      good and v2, a different version, stays current; v1 counts as downloaded and deleted.
    """
    s3 = s3_endpoint.client()
    new_bucket(s3, versioned)
    key = f"{PREFIX}a.csv"
    v1 = put(s3, {key: b"v1", f"{PREFIX}b.csv": b"b"})[key]
    hook = Overwriter(s3, key, b"v2, uploaded mid-run", _reaches_the_delete(key))

    with FaultProxy(s3_endpoint.url, before_forward=hook) as proxy:
        result = run_cli([*drain_args(tmp_path), "--json"], cli_env(proxy.url))

    expect = EXPECT[(s3_endpoint.name, versioned)]
    assert hook.fired == [
        {
            "if-match": "DeleteObject",
            "etag-batch": "DeleteObjects",
            "head-checked": "HeadObject",
            "version-id": "DeleteObjects",
        }[expect.guard]
    ]
    summary = summary_of(result)
    assert_guard(summary, result.stderr, expect)
    assert body_of(s3, key) == b"v2, uploaded mid-run"  # the new upload is current, whatever
    assert bucket_keys(s3) == {key}
    assert local_tree(tmp_path / "raw") == {"a.csv": b"v1", "b.csv": b"b"}
    line = by_key(tmp_path)[key]
    assert line["delete_guard"] == expect.guard
    if expect.guard == "version-id":
        assert result.returncode == 0, result.stderr
        assert line["status"] == "downloaded" and line["deleted"] is True
        assert line["version_id"] == v1 and line["detail"] == f"version {v1} removed for good"
        kept = s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", [])
        assert [v["VersionId"] for v in kept] != [] and v1 not in {v["VersionId"] for v in kept}
    else:
        assert result.returncode == 1, result.stderr
        assert summary["objects"]["changed"] == 1
        assert line["status"] == "changed" and line["deleted"] is False
        assert "new version stays" in line["detail"]
    if versioned:
        assert probe_traces(s3) == []


# -- versioned buckets ---------------------------------------------------------------------------


def test_versioned_bucket(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:
    """After the drain no version s3drain verified is current, and the probe left no trace.

    Where deletes are conditional (moto: if-match, moto-aws-like: etag-batch) a delete marker
    goes on top and every version stays in the history. On LocalStack (version-id) the verified
    version is removed for good and an older version of the same key, if there is one, is
    current again - as the run's warning says - and the next run meets it.
    """
    s3 = s3_endpoint.client()
    new_bucket(s3, versioned=True)
    a, b, c = f"{PREFIX}a.csv", f"{PREFIX}b.csv", f"{PREFIX}c.csv"
    old = put(s3, {a: b"the older version of a"})[a]
    verified = put(s3, {a: b"current a", b: b"only b", c: b"c, copied by the ETL"})
    # A copy no ledger knows: its MD5 proves it; version-id must learn its version by a HEAD.
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "c.csv").write_bytes(b"c, copied by the ETL")

    result = run_cli(
        [*drain_args(tmp_path), "--json", "--require-exact-delete"], cli_env(s3_endpoint.url)
    )

    assert result.returncode == 0, result.stderr
    expect = EXPECT[(s3_endpoint.name, True)]
    assert_guard(summary_of(result), result.stderr, expect)
    assert local_tree(tmp_path / "raw") == {"a.csv": b"current a", "b.csv": b"only b"}
    lines = by_key(tmp_path)
    assert lines[c]["status"] == "processed" and lines[c]["verified"] == "md5"
    # A download names the version its GET returned; a local copy's version is known only
    # where the guard needs it (version-id asks with a HEAD + If-Match): the listing names none.
    named = verified if expect.guard == "version-id" else verified | {c: None}
    assert {k: line["version_id"] for k, line in lines.items()} == named
    assert all(line["deleted"] and line["delete_guard"] == expect.guard for line in lines.values())
    for key in (a, b, c):
        assert verified[key] not in {v.get("VersionId") for v in current_versions(s3, key)}
    assert probe_traces(s3) == []
    history = s3.list_object_versions(Bucket=BUCKET)
    versions = {v["VersionId"] for v in history.get("Versions", [])}
    if expect.guard == "version-id":
        assert versions == {old}  # the verified ones are gone for good
        assert history.get("DeleteMarkers", []) == []
        assert bucket_keys(s3) == {a}  # a's older version is current again
        assert body_of(s3, a) == b"the older version of a"
        assert all(lines[k]["detail"] == f"version {verified[k]} removed for good" for k in lines)
        # The next run lists a's older version; the newer one's file holds a.csv: a conflict.
        again = run_cli([*drain_args(tmp_path), "--json"], cli_env(s3_endpoint.url))
        assert again.returncode == 1, again.stderr
        assert summary_of(again)["objects"]["conflict"] == 1
        assert bucket_keys(s3) == {a}
        assert (tmp_path / "raw" / "a.csv").read_bytes() == b"current a"
    else:
        assert versions == {old, *verified.values()}  # nothing destroyed
        markers = history.get("DeleteMarkers", [])
        assert sorted(m["Key"] for m in markers if m["IsLatest"]) == [a, b, c]
        assert bucket_keys(s3) == set()


def test_suspended_versioning_and_an_overwrite_before_the_delete(
    tmp_path: Path, s3_endpoint: S3Endpoint
) -> None:
    """Versioning Suspended: every upload replaces the `null` version, so a VersionId does not
    name one upload. LocalStack must get head-checked there, not version-id (which deleted the
    mid-run upload by VersionId=null, unseen, and said "version null removed for good")."""
    s3 = s3_endpoint.client()
    new_bucket(s3, versioned=True)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    key = f"{PREFIX}a.csv"
    put(s3, {key: b"v1", f"{PREFIX}b.csv": b"b"})
    hook = Overwriter(s3, key, b"v2, uploaded mid-run", _reaches_the_delete(key))

    with FaultProxy(s3_endpoint.url, before_forward=hook) as proxy:
        result = run_cli([*drain_args(tmp_path), "--json"], cli_env(proxy.url))

    assert hook.fired, "the overwrite never happened"
    expect = EXPECT[(s3_endpoint.name, False)]  # as an unversioned bucket
    assert_guard(summary_of(result), result.stderr, expect)
    assert body_of(s3, key) == b"v2, uploaded mid-run"
    assert result.returncode == 1, result.stderr
    line = by_key(tmp_path)[key]
    assert line["status"] == "changed" and line["deleted"] is False
    assert local_tree(tmp_path / "raw") == {"a.csv": b"v1", "b.csv": b"b"}


# -- objects `s3drain ingest` wrote as multipart with a full-object CRC ---------------------------


def test_multipart_ingest_with_full_object_crc_is_verified_by_it(
    tmp_path: Path, s3_endpoint: S3Endpoint
) -> None:
    """`s3drain ingest` uploads ~12 MiB in 5 MiB parts with a FULL_OBJECT CRC32; the multipart
    ETag is no MD5, so that CRC32 is what proves the bytes: of the download (checked as they
    stream), and of a copy the ETL already made (its CRC32 against the one a HEAD names)."""
    s3 = s3_endpoint.client()
    new_bucket(s3)
    files = {"big.csv": os.urandom(12 * MiB + 7), "copied.csv": os.urandom(11 * MiB + 3)}
    (tmp_path / "in").mkdir()
    for name, data in files.items():
        (tmp_path / "in" / name).write_bytes(data)
    env = cli_env(s3_endpoint.url)
    ingest = ["ingest", str(tmp_path / "in"), "--bucket", BUCKET, "--layer", "Raw"]
    ingest += ["--origin", "Local", "--spec", "Big", "--date", "2026-01-02"]
    ingest += ["--multipart-threshold", "5MiB", "--part-size", "5MiB"]

    uploaded = run_cli(ingest, env)

    assert uploaded.returncode == 0, uploaded.stderr + uploaded.stdout
    folder = "Local/CSV/Big/2026/01/02"
    keys = {name: f"Raw/{folder}/{name}" for name in files}
    for name, key in keys.items():
        head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        assert head["ETag"].strip('"').endswith("-3")  # three parts: no MD5 to check against
        assert head["ChecksumType"] == "FULL_OBJECT"
        assert head["ChecksumCRC32"] == crc32(files[name])
    base = tmp_path / "base"
    (base / "processed" / folder).mkdir(parents=True)
    (base / "processed" / folder / "copied.csv").write_bytes(files["copied.csv"])

    drained = run_cli(
        ["drain", "--bucket", BUCKET, "--prefix", "Raw/", "--local-base-path", str(base)], env
    )

    assert drained.returncode == 0, drained.stderr
    assert local_tree(base / "raw") == {f"{folder}/big.csv": files["big.csv"]}
    lines = by_key(base)
    for name, status in (("big.csv", "downloaded"), ("copied.csv", "processed")):
        line = lines[keys[name]]
        assert line["status"] == status and line["deleted"] is True, line
        assert line["verified"] == "crc32", line
        assert line["checksums"] == f"crc32:{crc32(files[name])}", line
    assert bucket_keys(s3) == set()


# -- the probe and each delete mode --------------------------------------------------------------


@dataclass(frozen=True)
class ModeCase:
    args: tuple[str, ...]
    # server -> the guard used, or the words of the exit-2 error when the run must refuse
    outcome: Mapping[str, str]


_REFUSED = "refused"
MODES = {
    "single": ModeCase(
        ("--delete-mode", "single"),
        {"moto": "if-match", "moto-aws-like": "if-match", "localstack": _REFUSED},
    ),
    "batch": ModeCase(
        ("--delete-mode", "batch"),
        {"moto": _REFUSED, "moto-aws-like": "etag-batch", "localstack": _REFUSED},
    ),
    "require-exact": ModeCase(
        ("--require-exact-delete",),
        {"moto": "if-match", "moto-aws-like": "etag-batch", "localstack": _REFUSED},
    ),
    "no-conditional": ModeCase(
        ("--no-conditional-delete",),
        {"moto": "none", "moto-aws-like": "none", "localstack": "none"},
    ),
}


def test_each_delete_mode(tmp_path: Path, s3_endpoint: S3Endpoint) -> None:
    """Each mode on an unversioned bucket; a mode this server cannot honour exits 2 before a
    single GET or delete, and says which answer of the probe stood in the way."""
    s3 = s3_endpoint.client()
    new_bucket(s3)
    env = cli_env(s3_endpoint.url)
    for name, case in MODES.items():
        objects = {f"{PREFIX}{name}/{i}.csv": f"{name} {i}".encode() for i in range(3)}
        put(s3, objects)
        base = tmp_path / name

        result = run_cli([*drain_args(base), "--json", *case.args], env)

        outcome = case.outcome[s3_endpoint.name]
        summary = summary_of(result)
        if outcome == _REFUSED:
            assert result.returncode == 2, (name, result.stderr)
            assert summary["exit_code"] == 2 and summary["error"]
            assert "nothing was changed" in summary["error"], summary["error"]
            assert summary["requests"]["by_operation"].get("GetObject", 0) == 0
            assert bucket_keys(s3) >= set(objects)
            assert not (base / "raw").exists() or local_tree(base / "raw") == {}
            assert audit(base) == []
            for key in objects:
                s3.delete_object(Bucket=BUCKET, Key=key)
            continue
        assert result.returncode == 0, (name, result.stderr)
        assert summary["delete_guard"] == outcome, name
        assert summary["delete_guard_exact"] is (outcome != "none")
        assert bucket_keys(s3) == set(), name
        lines = by_key(base)
        assert {line["delete_guard"] for line in lines.values()} == {outcome}
        assert local_tree(base / "raw") == {k[len(PREFIX) :]: v for k, v in objects.items()}
        if outcome == "none":
            assert "--no-conditional-delete" in result.stderr
            assert summary["probe"] is None  # nothing to probe for
        else:
            assert summary["probe"].startswith(EXPECT[(s3_endpoint.name, False)].probe)


# The probe's requests: each form once; a 404 to it is followed by a control delete of another
# missing key (moto's If-Match, AWS-like moto's per-key ETag); LocalStack answers 501 and
# `Deleted` (in an unversioned bucket no delete marker to remove).
PROBE_REQUESTS = {"moto": 2 + 1, "moto-aws-like": 2 + 2, "localstack": 1 + 1}


def test_the_probe_rides_out_a_503_and_is_cached_a_day(
    tmp_path: Path, s3_endpoint: S3Endpoint
) -> None:
    """The first run's probe meets two 503s (retried, then answered: same guard); the next run
    on the same base and endpoint sends no probe request; --probe asks again."""
    s3 = s3_endpoint.client()
    new_bucket(s3)
    expect = EXPECT[(s3_endpoint.name, False)]
    deletes = frozenset({"DeleteObject", "DeleteObjects"})
    with FaultProxy(s3_endpoint.url, record_log=True) as proxy:
        env = cli_env(proxy.url)
        runs: list[dict[str, Any]] = []
        for number, extra in enumerate(([], [], ["--probe"])):
            put(s3, {f"{PREFIX}{number}.csv": f"run {number}".encode()})
            if number == 0:
                proxy.configure(
                    fault_rate=1.0, fault_kinds=("503",), fault_ops=deletes, max_faults=2
                )
            else:
                proxy.configure(fault_rate=0.0)
            proxy.reset_counts()
            result = run_cli([*drain_args(tmp_path), "--json", *extra], env)
            assert result.returncode == 0, (number, result.stderr)
            summary = summary_of(result)
            assert_guard(summary, result.stderr, expect)
            probe_requests = sum(proxy.counts().get(op, 0) for op in deletes) - 1  # the run's own
            runs.append({"summary": summary, "probe_requests": probe_requests})

    first, cached, forced = runs
    assert first["summary"]["retries"] >= 2
    assert first["probe_requests"] == 2 + PROBE_REQUESTS[s3_endpoint.name]  # two 503s first
    assert "cached" not in first["summary"]["probe"]
    assert cached["probe_requests"] == 0 and "cached" in cached["summary"]["probe"]
    assert forced["probe_requests"] == PROBE_REQUESTS[s3_endpoint.name]
    assert "cached" not in forced["summary"]["probe"]
    assert bucket_keys(s3) == set()
    assert local_tree(tmp_path / "raw") == {f"{n}.csv": f"run {n}".encode() for n in range(3)}
