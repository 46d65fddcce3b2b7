"""The three ways the design before the ledger deleted bytes it had not delivered (issue 11),
each run the way users run it - the real CLI against moto's server - on this machine's file
system and on one without user xattrs (a bindfs --xattr-none FUSE mount), where the old design
fell back to size and mtime. The rule every test checks: no object leaves S3 unless its exact
bytes were delivered.

1. A same-size corrected upload lands while the old version is still streaming: the old
   version's delete is refused (412, `changed`). The old design's next run found the old file
   `present` by size + mtime and deleted the new version.
2. A host clock off from S3's: a plain `cp` into processed/ vouched (by mtime) for a later
   corrected upload of the same size, which was deleted. Run here with the child's clock moved
   a day ahead and a day behind (faketime), and on the real clock: no decision changes.
3. Two keys, one file: through a folder symlink that stays inside raw/, `link/x.csv` and
   `real/x.csv` are one file; the second key was `present` by size and deleted with only the
   first key's bytes on disk. (The case-insensitive variant needs a case-folding file system:
   ext4 `-O casefold` does not mount on this kernel - no CONFIG_UNICODE - and Debian has no
   case-insensitive FUSE file system, so it is not run here; `tests/test_paths.py` covers the
   probe and the refusal of a case twin.)
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.support.endpoints import S3Endpoint
from tests.support.ledgerkit import (
    PREFIX,
    Versions,
    assert_base_on,
    body,
    drain_cli,
    etl_copy,
    etl_move,
    files,
    ledger_query,
    same_size_other_bytes,
)
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import S3Client

DAY = 86400


# -- 1. a corrected upload while the old version streams ---------------------------------------


# The delete each server gets with default settings: one DeleteObject + If-Match (moto as
# released), or DeleteObjects with each key's ETag (AWS; moto patched to do as AWS does).
DELETES = {"moto": ("if-match", "DeleteObject"), "moto-aws-like": ("etag-batch", "DeleteObjects")}


@pytest.mark.parametrize("s3_endpoint", sorted(DELETES), indirect=True)
def test_a_corrected_upload_during_the_old_versions_delete_is_never_deleted(
    base_dir: Path, s3_endpoint: S3Endpoint, request: pytest.FixtureRequest
) -> None:
    """The old version is downloaded; just before its delete goes out the producer uploads a
    corrected version of the same size, so the guarded delete is refused: `changed`. The next
    run must keep the corrected version in S3 while the old file sits at raw/ (a `conflict`,
    whatever the old file's size and mtime say), and download it when raw/ is free again.
    Single-part objects (the MD5 proves the old file is not the new object) and multipart ones
    without any checksum (only a download and a byte comparison can tell)."""
    assert_base_on(base_dir, request.node.callspec.params["base_dir"])
    s3_url, s3 = s3_endpoint.url, s3_endpoint.client()
    guard, operation = DELETES[s3_endpoint.name]
    s3.create_bucket(Bucket="lake")
    uploads = Versions(s3, s3_url)
    keys = {"a": "a.csv", "b": "b.csv", "m": "m.bin", "n": "n.bin"}
    old = {name: f"{name}: version one, wrong totals\n".encode() * 40 for name in keys}
    new = {name: same_size_other_bytes(data) for name, data in old.items()}
    for name, key in keys.items():
        (uploads.put if name in "ab" else uploads.put_multipart)(key, old[name])
    by_key = {PREFIX + key: name for name, key in keys.items()}
    overwritten: list[str] = []

    def corrected_upload_lands(info: RequestInfo) -> None:
        # Not the probe's deletes (before any download): a batch names its keys in its body,
        # so "ours" is a delete sent once every old version is at raw/.
        if info.op != operation or not all((base_dir / "raw" / k).exists() for k in keys.values()):
            return
        names = list(keys) if info.op == "DeleteObjects" else [by_key.get(info.key, "")]
        for name in names:
            if name in keys and name not in overwritten:
                overwritten.append(name)
                (uploads.put if name in "ab" else uploads.put_multipart)(keys[name], new[name])

    with FaultProxy(s3_url, before_forward=corrected_upload_lands) as proxy:
        first = drain_cli(base_dir, proxy.url)

    assert first.code == 1, first.stderr
    assert first.summary["delete_guard"] == guard
    assert sorted(overwritten) == ["a", "b", "m", "n"]
    for name, key in keys.items():
        assert first.status(key) == "changed" and not first.deleted(key)
        assert body(s3, key) == new[name]
    assert files(base_dir, "raw") == {keys[n]: old[n] for n in keys}

    # The ETL takes b and n on to processed/, so raw/ is free for them; a and m stay at raw/.
    etl_move(base_dir, keys["b"])
    etl_move(base_dir, keys["n"])

    second = drain_cli(base_dir, s3_url)

    assert second.code == 1, second.stderr
    uploads.check(base_dir, second)
    assert second.status(keys["a"]) == "conflict" and second.status(keys["m"]) == "conflict"
    assert second.status(keys["b"]) == "downloaded" and second.status(keys["n"]) == "downloaded"
    assert second.gets() >= 3  # m fetched to be compared; b and n to be delivered
    assert body(s3, keys["a"]) == new["a"] and body(s3, keys["m"]) == new["m"]
    assert body(s3, keys["b"]) is None and body(s3, keys["n"]) is None
    assert files(base_dir, "raw") == {
        keys["a"]: old["a"],
        keys["m"]: old["m"],
        keys["b"]: new["b"],
        keys["n"]: new["n"],
    }
    assert files(base_dir, "processed") == {keys["b"]: old["b"], keys["n"]: old["n"]}

    third = drain_cli(base_dir, s3_url)  # and it stays so, run after run

    assert third.code == 1 and set(third.lines) == {PREFIX + keys["a"], PREFIX + keys["m"]}
    assert third.status(keys["a"]) == "conflict" and third.status(keys["m"]) == "conflict"
    assert body(s3, keys["a"]) == new["a"] and body(s3, keys["m"]) == new["m"]


# -- 2. a host clock off from S3's ------------------------------------------------------------

CLOCKS = {"real clock": 0, "clock a day ahead": DAY, "clock a day behind": -DAY}


def clock_command(shift: int) -> list[str]:
    if shift == 0:
        return []
    faketime = shutil.which("faketime")
    if faketime is None:
        pytest.skip(
            "FAKETIME IS NOT INSTALLED: the clock-skew runs need it "
            "(`make test` installs it; or apt-get install faketime)"
        )
    return [faketime, "-f", f"{shift:+d}s"]


@pytest.mark.parametrize("clock", list(CLOCKS))
def test_a_skewed_clock_changes_no_decision(
    clock: str, base_dir: Path, s3_url: str, s3: S3Client, request: pytest.FixtureRequest
) -> None:
    """The ETL copies delivered files into processed/ (a plain `cp`: a new file, no xattrs, the
    host's mtime); then the producer uploads a corrected version of the same size, or the same
    bytes again. Every run and every copy's mtime on a host clock a day ahead of S3's, a day
    behind, or right: each outcome is the one in the table, whatever the clock.

        key    after the cp       re-upload            outcome (why)
        c.csv  raw/ kept          other bytes          conflict (raw/ holds the old bytes)
        d.csv  raw/ removed       other bytes          downloaded (nothing local is it)
        e.csv  raw/ kept          the same bytes       processed (the copy's MD5 proves it)
        f.bin  raw/ kept          other bytes, multi   conflict (downloaded, bytes compared)
        g.bin  raw/ removed       the same bytes, m.   processed (downloaded, bytes compared)
    """
    assert_base_on(base_dir, request.node.callspec.params["base_dir"])
    shift = CLOCKS[clock]
    command = clock_command(shift)
    s3.create_bucket(Bucket="lake")
    uploads = Versions(s3, s3_url)
    old = {k: f"{k}: yesterday's export\n".encode() * 30 for k in ("c.csv", "d.csv", "e.csv")}
    old |= {k: f"{k}: yesterday's export\n".encode() * 30 for k in ("f.bin", "g.bin")}
    for key, data in old.items():
        (uploads.put_multipart if key.endswith(".bin") else uploads.put)(key, data)

    first = drain_cli(base_dir, s3_url, command=command)

    assert first.code == 0, first.stderr
    started = ledger_query(base_dir, "SELECT started FROM runs ORDER BY id")[-1][0]
    assert abs(started - (time.time() + shift)) < 3600, "faketime did not move the run's clock"
    for key in old:
        etl_copy(base_dir, key, remove_raw=key in ("d.csv", "g.bin"), mtime=time.time() + shift)
    new = {key: same_size_other_bytes(old[key]) for key in ("c.csv", "d.csv", "f.bin")}
    new |= {key: old[key] for key in ("e.csv", "g.bin")}
    uploads.next_second()
    for key, data in new.items():
        (uploads.put_multipart if key.endswith(".bin") else uploads.put)(key, data)

    second = drain_cli(base_dir, s3_url, command=command)

    uploads.check(base_dir, second)
    outcome = {
        key: (second.status(key), body(s3, key) == new[key], files(base_dir, "raw").get(key))
        for key in new
    }
    assert outcome == {
        "c.csv": ("conflict", True, old["c.csv"]),
        "d.csv": ("downloaded", False, new["d.csv"]),
        "e.csv": ("processed", False, old["e.csv"]),
        "f.bin": ("conflict", True, old["f.bin"]),
        "g.bin": ("processed", False, None),
    }
    assert files(base_dir, "processed") == old
    assert second.code == 1


# -- 3. two keys, one file --------------------------------------------------------------------


def test_two_keys_that_resolve_to_one_file(
    base_dir: Path, s3_url: str, s3: S3Client, request: pytest.FixtureRequest
) -> None:
    """`raw/<x>-link -> <x>-real` (a folder symlink that stays inside raw/, so s3drain follows
    it): the keys `<x>-link/data` and `<x>-real/data` are one local file. Whichever key gets the
    file first is delivered; the other may leave S3 only if its bytes are the file's.

        pair   the two objects                   outcome
        diff   same size, other bytes            one delivered, the other stays in S3 for good
        same   the same bytes                    both may go: the file holds both
        multi  multipart, same size, other bytes one delivered, the other stays (compared)
    """
    assert_base_on(base_dir, request.node.callspec.params["base_dir"])
    s3.create_bucket(Bucket="lake")
    uploads = Versions(s3, s3_url)
    raw = base_dir / "raw"
    for pair in ("diff", "same", "multi"):
        (raw / f"{pair}-real").mkdir(parents=True)
        os.symlink(f"{pair}-real", raw / f"{pair}-link")
    left = b"the left key's rows\n" * 50
    right = same_size_other_bytes(left)
    objects = {
        "diff-real/data": left,
        "diff-link/data": right,
        "same-real/data": left,
        "same-link/data": left,
        "multi-real/data": left,
        "multi-link/data": right,
    }
    for key, data in objects.items():
        (uploads.put_multipart if key.startswith("multi") else uploads.put)(key, data)

    runs = [drain_cli(base_dir, s3_url), drain_cli(base_dir, s3_url)]

    for run in runs:
        uploads.check(base_dir, run)
    for pair in ("diff", "multi"):
        on_disk = (raw / f"{pair}-real" / "data").read_bytes()
        kept = {k: body(s3, k) for k in objects if k.startswith(pair)}
        assert sorted(v is None for v in kept.values()) == [False, True], kept
        for key, still in kept.items():
            if still is None:
                assert objects[key] == on_disk  # the one that went is the file's
            else:
                assert still == objects[key]  # the other stays untouched, run after run
                assert [run.status(key) for run in runs] == ["conflict", "conflict"]
    assert (raw / "same-real" / "data").read_bytes() == left
    assert body(s3, "same-real/data") is None and body(s3, "same-link/data") is None
    assert runs[1].code == 1
