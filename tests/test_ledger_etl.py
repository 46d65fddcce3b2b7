"""What the ETL does with a delivered file, then what the producer uploads again, then the next
drain - through the real CLI, on this machine's file system and on one without user xattrs.

The first drain delivers every object (for the `kept` column with --no-delete: the object stays
in S3 and only the ledger knows it was delivered). The ETL then takes each file one way:

    leave    the file stays at raw/
    mv       `mv raw/x processed/x` (the same file, moved)
    cp-rm    `cp raw/x processed/x; rm raw/x` (a new file, a plain copy)
    rewrite  the ETL writes its own bytes into raw/x in place (same file, same size)
    rm       `rm raw/x` (consumed and gone)

and the producer uploads the same bytes again (`same`: a new object with the same ETag), or other
bytes of the same size (`other`), or nothing (`kept`: the delivered object is still listed).
Each object is single-part (an MD5 ETag) and multipart without any checksum (only a download
and a byte comparison can prove a local copy); both must end the same way.

The next drain, and why - an object leaves S3 only if its exact bytes were delivered:

    way      same                          other                      kept
    leave    present: raw/ holds its bytes conflict: raw/ holds     present: the ledger's
                                           the old bytes             delivery, same file at raw/
    mv       processed: processed/ holds   downloaded to raw/        processed: the ledger's
             its bytes                                               delivery (moved on)
    cp-rm    processed: the copy holds     downloaded to raw/        processed: the ledger's
             its bytes                                               delivery (moved on)
    rewrite  conflict: its bytes are       conflict: raw/ holds      present: the ledger's
             nowhere; raw/ holds the ETL's the ETL's bytes           delivery, before the ETL
                                                                     rewrote it
    rm       downloaded again (a new       downloaded to raw/        processed: the ledger's
             object)                                                 delivery (consumed)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ledgerkit import (
    Versions,
    assert_base_on,
    body,
    drain_cli,
    etl_copy,
    etl_delete,
    etl_move,
    etl_rewrite,
    files,
    same_size_other_bytes,
)
from tests.support.server import S3Client

WAYS = ("leave", "mv", "cp-rm", "rewrite", "rm")
UPLOADS = ("same", "other", "kept")
KINDS = {"csv": "single-part", "bin": "multipart"}

# (status of the next drain, deleted from S3)
EXPECTED = {
    ("leave", "same"): "present",
    ("leave", "other"): "conflict",
    ("leave", "kept"): "present",
    ("mv", "same"): "processed",
    ("mv", "other"): "downloaded",
    ("mv", "kept"): "processed",
    ("cp-rm", "same"): "processed",
    ("cp-rm", "other"): "downloaded",
    ("cp-rm", "kept"): "processed",
    ("rewrite", "same"): "conflict",
    ("rewrite", "other"): "conflict",
    ("rewrite", "kept"): "present",
    ("rm", "same"): "downloaded",
    ("rm", "other"): "downloaded",
    ("rm", "kept"): "processed",
}


def etl_bytes(data: bytes) -> bytes:
    """What the ETL writes over a file it rewrites in place: same size, other bytes."""
    mine = data[::-1]
    assert len(mine) == len(data) and mine not in (data, same_size_other_bytes(data))
    return mine


def etl_takes(base: Path, way: str, key: str, data: bytes) -> None:
    if way == "mv":
        etl_move(base, key)
    elif way == "cp-rm":
        etl_copy(base, key, remove_raw=True)
    elif way == "rewrite":
        etl_rewrite(base, key, etl_bytes(data))
    elif way == "rm":
        etl_delete(base, key)
    else:
        assert way == "leave"


def test_every_way_the_etl_takes_a_file_then_every_re_upload(
    base_dir: Path, s3_url: str, s3: S3Client, request: pytest.FixtureRequest
) -> None:
    assert_base_on(base_dir, request.node.callspec.params["base_dir"])
    s3.create_bucket(Bucket="lake")
    uploads = Versions(s3, s3_url)
    cases = [(way, up, ext) for way in WAYS for up in UPLOADS for ext in KINDS]

    def rel(way: str, up: str, ext: str) -> str:
        return f"{up}/{way}.{ext}"

    def upload(key: str, data: bytes) -> None:
        (uploads.put_multipart if key.endswith(".bin") else uploads.put)(key, data)

    first = {rel(*c): f"{rel(*c)}: the export as first uploaded\n".encode() * 20 for c in cases}
    for key, data in first.items():
        upload(key, data)

    delivered_kept = drain_cli(base_dir, s3_url, "--no-delete", "--include", "kept/**")
    delivered = drain_cli(base_dir, s3_url, "--exclude", "kept/**")

    for run in (delivered_kept, delivered):
        assert run.code == 0, run.stderr
        uploads.check(base_dir, run)
    assert files(base_dir, "raw") == first
    assert {body(s3, k) is None for k in first if not k.startswith("kept/")} == {True}
    assert {body(s3, k) == first[k] for k in first if k.startswith("kept/")} == {True}

    for way, up, ext in cases:
        etl_takes(base_dir, way, rel(way, up, ext), first[rel(way, up, ext)])
    uploads.next_second()
    again = {
        rel(way, up, ext): first[rel(way, up, ext)]
        if up == "same"
        else same_size_other_bytes(first[rel(way, up, ext)])
        for way, up, ext in cases
        if up != "kept"
    }
    for key, data in again.items():
        upload(key, data)
    raw_before, processed_before = files(base_dir, "raw"), files(base_dir, "processed")

    run = drain_cli(base_dir, s3_url)

    uploads.check(base_dir, run)
    assert run.code == 1, run.stderr  # the conflicts
    outcomes = {(way, up, ext): run.status(rel(way, up, ext)) for way, up, ext in cases}
    assert outcomes == {(way, up, ext): EXPECTED[way, up] for way, up, ext in cases}
    raw, processed = files(base_dir, "raw"), files(base_dir, "processed")
    for way, up, ext in cases:
        key = rel(way, up, ext)
        listed = again.get(key, first[key])
        status = EXPECTED[way, up]
        in_s3 = body(s3, key)
        where = f"{way} / {up} / {KINDS[ext]}"
        if status == "conflict":
            assert in_s3 == listed, where
            assert raw[key] == raw_before[key], where  # never replaced
        else:
            assert in_s3 is None and run.deleted(key), where
        if status == "downloaded":
            assert raw[key] == listed, where
        else:
            assert raw.get(key) == raw_before.get(key), where
        assert processed.get(key) == processed_before.get(key), where
    # A single-part object's local copy is proven by its MD5 alone; a multipart one without a
    # checksum is fetched to be compared wherever a local file could be it.
    compared = [c for c in cases if c[2] == "bin" and c[1] != "kept" and c[0] != "rm"]
    downloads = [c for c in cases if EXPECTED[c[0], c[1]] == "downloaded"]
    assert run.gets() == len({*compared, *downloads}), run.summary["requests"]
