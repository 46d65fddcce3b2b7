"""The first run of this release on a base path the previous release (no ledger) wrote: its files
tagged with `user.s3drain.etag` (where the file system kept xattrs), its audit log, and its
delete journal `.s3drain/deletes-in-flight.jsonl` as a run killed mid-delete left it.

The previous release's formats, as it wrote them (checked against that release's code): the tag
is the bare ETag in ASCII; a journal line is {key, size, etag, version_id, last_modified,
status, local_path, verified, bytes}; it left an empty journal after a clean run.

What the first run must do (`s3drain/local/legacy.py`, `drain/recovery.py`):

    file or journal entry                         native (tags)            xattr-less (none)
    raw/tagged.csv   MD5 tag, object in S3        present, no GET (MD5)    the same
    raw/tagged.bin   multipart tag, in S3         present, no GET (tag)    present, fetched and
                                                                           compared
    processed/moved.csv  MD5 tag, in S3           processed, no GET        the same
    processed/moved.bin  multipart tag, in S3     processed, no GET (tag)  processed, compared
    raw/stale.csv    MD5 tag; S3 has a corrected  conflict (MD5 differs)   the same
                     upload of the same size
    raw/stale.bin    multipart tag; S3 has a      conflict (fetched,       the same
                     corrected multipart upload   compared)
    journal: gone.csv     deleted before the kill a `deleted` line          the same
    journal: there.csv    delete never sent       drained: deleted, no GET  the same
    journal: moved-on.csv overwritten since       a `changed` line; the     the same
                                                  new version: conflict

So on a file system without xattrs a multipart object is downloaded once more and compared with
the local file byte for byte: nothing vouches for it but its bytes.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import LAUNCHER
from tests.support.ledgerkit import (
    PREFIX,
    Versions,
    assert_base_on,
    body,
    drain_cli,
    files,
    ledger_rows,
    same_size_other_bytes,
)
from tests.support.server import S3Client
from tests.test_cli_e2e import BUCKET, cli_env, drain_args, run_cli

XATTR_ETAG = "user.s3drain.etag"
OLD_RUN = "20261101T020000Z"


def tag(path: Path, etag: str) -> bool:
    """What the previous release did after a download: tag where the file system allows."""
    try:
        os.setxattr(path, XATTR_ETAG, etag.encode("ascii"))
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
            return False
        raise
    return True


def journal_line(rel: str, data: bytes, etag: str, last_modified: datetime, path: Path) -> str:
    return json.dumps(
        {
            "key": PREFIX + rel,
            "size": len(data),
            "etag": etag,
            "version_id": None,
            "last_modified": last_modified.isoformat(),
            "status": "downloaded",
            "local_path": str(path),
            "verified": "md5",
            "bytes": len(data),
        }
    )


def old_audit_line(rel: str, data: bytes, etag: str, path: Path) -> dict[str, Any]:
    return {
        "time": "2026-11-01T02:00:01.000Z",
        "run": OLD_RUN,
        "bucket": BUCKET,
        "key": PREFIX + rel,
        "size": len(data),
        "etag": etag,
        "version_id": None,
        "last_modified": "2026-11-01T01:00:00+00:00",
        "status": "downloaded",
        "deleted": False,
        "local_path": str(path),
        "verified": "md5",
        "detail": "kept in S3 (--no-delete)",
    }


def last_modified(s3: S3Client, rel: str) -> datetime:
    when: datetime = s3.head_object(Bucket=BUCKET, Key=PREFIX + rel)["LastModified"]
    return when.astimezone(UTC)


def test_first_run_takes_over_what_the_previous_release_left(
    base_dir: Path, s3_url: str, s3: S3Client, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["base_dir"]
    assert_base_on(base_dir, kind)
    s3.create_bucket(Bucket=BUCKET)
    uploads = Versions(s3, s3_url)
    raw, processed, state = base_dir / "raw", base_dir / "processed", base_dir / ".s3drain"
    for folder in (raw, processed, state):
        folder.mkdir(parents=True, exist_ok=True)
    data = {
        name: f"{name}: delivered by the previous release\n".encode() * 25
        for name in (
            "tagged.csv",
            "tagged.bin",
            "moved.csv",
            "moved.bin",
            "stale.csv",
            "stale.bin",
            "gone.csv",
            "there.csv",
            "moved-on.csv",
        )
    }
    etags: dict[str, str] = {}
    for name in ("tagged.csv", "moved.csv", "stale.csv", "gone.csv", "there.csv", "moved-on.csv"):
        etags[name] = uploads.put(name, data[name])
    for name in ("tagged.bin", "moved.bin", "stale.bin"):
        etags[name] = uploads.put_multipart(name, data[name])
    when = {name: last_modified(s3, name) for name in ("gone.csv", "there.csv", "moved-on.csv")}

    # What the previous release left: every file tagged (where it could), two moved on by the
    # ETL (mv keeps xattrs), the audit log, and a journal of a batch whose run was killed.
    audit = []
    for name, content in data.items():
        folder = processed if name.startswith("moved.") else raw
        (folder / name).write_bytes(content)
        tagged = tag(folder / name, etags[name])
        assert tagged is (kind == "native")
        audit.append(old_audit_line(name, content, etags[name], raw / name))
    (state / "audit.jsonl").write_text("".join(json.dumps(line) + "\n" for line in audit))
    (state / "lock").write_text("4242\n")
    journal = [
        journal_line(name, data[name], etags[name], when[name], raw / name)
        for name in ("gone.csv", "there.csv", "moved-on.csv")
    ]
    (state / "deletes-in-flight.jsonl").write_text("\n".join(journal) + "\n")
    # Since then: the killed batch's first delete had gone through; a producer corrected
    # three objects (same size, other bytes) before the next run.
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "gone.csv")
    uploads.next_second()
    corrected = {n: same_size_other_bytes(data[n]) for n in ("stale.csv", "stale.bin")}
    corrected["moved-on.csv"] = same_size_other_bytes(data["moved-on.csv"])
    uploads.put("stale.csv", corrected["stale.csv"])
    uploads.put_multipart("stale.bin", corrected["stale.bin"])
    uploads.put("moved-on.csv", corrected["moved-on.csv"])
    old_audit = (state / "audit.jsonl").read_text()

    run = drain_cli(base_dir, s3_url)

    uploads.check(base_dir, run)
    assert run.code == 1, run.stderr  # the conflicts
    expected = {
        "tagged.csv": ("present", True),
        "tagged.bin": ("present", True),
        "moved.csv": ("processed", True),
        "moved.bin": ("processed", True),
        "stale.csv": ("conflict", False),
        "stale.bin": ("conflict", False),
        "gone.csv": ("downloaded", True),
        "there.csv": ("processed", True),
        "moved-on.csv": ("conflict", False),
    }
    assert {n: (run.status(n), run.deleted(n)) for n in data} == expected
    changed = [
        line
        for line in _audit(state)[len(audit) :]
        if line["key"] == PREFIX + "moved-on.csv" and line["status"] == "changed"
    ]
    assert len(changed) == 1 and changed[0]["etag"] == etags["moved-on.csv"]
    gone = run.lines[PREFIX + "gone.csv"]
    assert gone["etag"] == etags["gone.csv"] and "interrupted run" in gone["detail"]
    # Nothing fetched that a tag or the content proves: on the native file system only the
    # corrected multipart object (to compare); without xattrs the two tagged multipart files too.
    assert run.gets() == (1 if kind == "native" else 3), run.summary["requests"]
    for name, (status, deleted) in expected.items():
        assert (body(s3, name) is None) is deleted, name
        if status == "conflict":
            assert body(s3, name) == corrected[name]
    assert files(base_dir, "raw") == {n: data[n] for n in data if not n.startswith("moved.")}
    assert files(base_dir, "processed") == {n: data[n] for n in data if n.startswith("moved.")}
    assert not (state / "deletes-in-flight.jsonl").exists()
    assert (state / "audit.jsonl").read_text().startswith(old_audit)  # appended, never rewritten

    migrated = {r["key"][len(PREFIX) :] for r in ledger_rows(base_dir, "how = 'migrated'")}
    assert migrated == ({"tagged.bin", "moved.bin", "stale.bin"} if kind == "native" else set())
    history = run_cli(["history", "--local-base-path", str(base_dir), "--json"], cli_env(s3_url))
    assert history.returncode == 0, history.stderr
    rows = [json.loads(line) for line in history.stdout.splitlines()]
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(row["key"][len(PREFIX) :], []).append(row)
    assert [r["delete_state"] for r in by_key["gone.csv"]] == ["deleted"]
    assert [r["delete_state"] for r in by_key["moved-on.csv"]] == ["changed"]
    assert {r["how"] for r in rows if r["key"].endswith(".bin")} >= (
        {"migrated"} if kind == "native" else set()
    )


def _audit(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state / "audit.jsonl").read_text().splitlines()]


def test_a_first_run_stopped_mid_takeover_leaves_it_to_the_next(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    """The first run of this release fails while it takes over the old journal (here: the disk
    fills, a file-size limit on the process); the next run must still take it over: every
    delete the killed old run had sent gets its `deleted` line, and the journal goes."""
    s3.create_bucket(Bucket=BUCKET)
    uploads = Versions(s3, s3_url)
    base, state = tmp_path / "base", tmp_path / "base" / ".s3drain"
    state.mkdir(parents=True)
    (base / "raw").mkdir()
    # Long keys: the journal's rows do not fit in what the limit leaves after the ledger's
    # creation (a killed batch held up to 1000 deletes).
    names = [f"{'deep/' * 150}{i:03d}.csv" for i in range(60)]
    lines = []
    for name in names:
        data = f"{name[-7:]}\n".encode()
        etag = uploads.put(name, data)
        lines.append(journal_line(name, data, etag, last_modified(s3, name), base / "raw" / "x"))
        s3.delete_object(Bucket=BUCKET, Key=PREFIX + name)  # the delete had gone through
    (state / "deletes-in-flight.jsonl").write_text("\n".join(lines) + "\n")
    (state / "audit.jsonl").write_text("")

    first = subprocess.run(
        [sys.executable, str(LAUNCHER), "--fsize", "100000", "--", *drain_args(base)],
        env=cli_env(s3_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert first.returncode == 5, first.stderr
    assert "state.db" in first.stderr and (state / "state.db").exists()

    second = drain_cli(base, s3_url)

    assert second.code == 0, second.stderr
    confirmed = {k[len(PREFIX) :] for k, line in second.lines.items() if line["deleted"]}
    assert confirmed == set(names)
    assert sum(line["deleted"] for line in _audit(state)) == len(names)  # each line once
    assert not (state / "deletes-in-flight.jsonl").exists()


def test_a_journaled_delete_the_old_rules_decided_by_size_alone_is_decided_again(
    base_dir: Path, s3_url: str, s3: S3Client, request: pytest.FixtureRequest
) -> None:
    """The previous release matched a file without a tag by size (and an mtime after the upload)
    - the very rule that deleted corrected uploads. A run of it decided that a corrected upload
    was `present` (or `processed`) that way, journaled the delete and was killed before sending
    it. The journal entry records that decision, not a delivery: the corrected upload must be
    decided again by this release's rules (a conflict: the local file holds the old bytes), not
    deleted on the journal's word."""
    assert_base_on(base_dir, request.node.callspec.params["base_dir"])
    s3.create_bucket(Bucket=BUCKET)
    uploads = Versions(s3, s3_url)
    raw, processed, state = base_dir / "raw", base_dir / "processed", base_dir / ".s3drain"
    for folder in (raw, processed, state):
        folder.mkdir(parents=True, exist_ok=True)
    old = {n: f"{n}: the old export\n".encode() * 30 for n in ("p.csv", "q.csv", "m.bin")}
    corrected = {n: same_size_other_bytes(data) for n, data in old.items()}
    lines, where = [], {"p.csv": raw, "q.csv": processed, "m.bin": raw}
    for name, data in corrected.items():
        etag = (uploads.put_multipart if name.endswith(".bin") else uploads.put)(name, data)
        local = where[name] / name
        local.write_bytes(old[name])  # written after the upload, as the old rule wanted
        entry = json.loads(journal_line(name, data, etag, last_modified(s3, name), local))
        entry["status"] = "processed" if where[name] is processed else "present"
        entry["verified"] = "size"
        lines.append(json.dumps(entry))
    (state / "deletes-in-flight.jsonl").write_text("\n".join(lines) + "\n")
    (state / "audit.jsonl").write_text("")

    run = drain_cli(base_dir, s3_url)

    uploads.check(base_dir, run)
    assert run.status("p.csv") == "conflict" and run.status("m.bin") == "conflict"
    assert run.status("q.csv") == "downloaded"  # processed/ holds other bytes; raw/ was free
    assert {name: body(s3, name) for name in corrected} == {
        "p.csv": corrected["p.csv"],
        "m.bin": corrected["m.bin"],
        "q.csv": None,
    }
    assert files(base_dir, "raw") == {
        "p.csv": old["p.csv"],
        "m.bin": old["m.bin"],
        "q.csv": corrected["q.csv"],
    }
    assert not (state / "deletes-in-flight.jsonl").exists()
