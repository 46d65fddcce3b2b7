"""The per-object decision table, row by row; the proofs from content it rests on; and which
ledger row counts as the delivery of which object."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from awscrt import checksums as crt

from s3drain.drain.decide import Action, decide
from s3drain.drain.proof import Content, Proof, prove
from s3drain.local.ledger_rows import Delivery
from s3drain.local.paths import FolderMarker, Kind, LocalFile, MappedPath, Refusal, look
from s3drain.records import FileId, ObjectRecord

DATA = b"0123456789"
SIZE = len(DATA)
MD5 = hashlib.md5(DATA).hexdigest()
MULTIPART = "a" * 32 + "-3"
RAW = "/base/raw/a.csv"
PROCESSED = "/base/processed/a.csv"
MAPPED = MappedPath(rel="a.csv", raw=RAW, processed=PROCESSED)
WHEN = datetime(2024, 5, 2, tzinfo=UTC)


def record(etag: str = MD5, size: int = SIZE) -> ObjectRecord:
    return ObjectRecord(key="exports/a.csv", size=size, etag=etag, last_modified=WHEN)


def missing(path: str) -> LocalFile:
    return LocalFile(path, Kind.MISSING)


def file(path: str, inode: int = 7, size: int = SIZE) -> LocalFile:
    return LocalFile(path, Kind.FILE, FileId(device=1, inode=inode, size=size, mtime_ns=1))


def kind(path: str, k: Kind) -> LocalFile:
    return LocalFile(path, k)


SAME = Proof(Content.SAME, "md5", f"md5:{MD5}")
DIFFERENT = Proof(Content.DIFFERENT, "its MD5 differs from the object's ETag")
UNPROVEN = Proof(Content.UNPROVEN, "no checksum")


def delivery(inode: int = 7, path: str = RAW) -> Delivery:
    return Delivery(
        id=1,
        bucket="lake",
        key="exports/a.csv",
        etag=MD5,
        version_id=None,
        size=SIZE,
        last_modified=WHEN.isoformat(),
        checksums=f"md5:{MD5}",
        verified="md5",
        path=path,
        file=FileId(1, inode, SIZE, 1),
        run="20240502T000000Z",
        how="downloaded",
        state="delivered",
        delivered_at=0.0,
        delete_state=None,
        settled_at=None,
        audited=True,
    )


@dataclass(frozen=True)
class Row:
    raw: LocalFile
    processed: LocalFile
    expected: Action
    raw_proof: Proof | None = None
    processed_proof: Proof | None = None
    delivered: Delivery | None = None
    compare_with: tuple[str, ...] = ()


TABLE: dict[str, Row] = {
    "nothing local -> download": Row(missing(RAW), missing(PROCESSED), Action.DOWNLOAD),
    # the ledger decides before any file is looked at
    "delivered, its file still at raw -> present": Row(
        file(RAW), missing(PROCESSED), Action.PRESENT, delivered=delivery()
    ),
    "delivered, file moved by the ETL -> processed": Row(
        missing(RAW), missing(PROCESSED), Action.PROCESSED, delivered=delivery()
    ),
    "delivered, another file at raw now -> processed": Row(
        file(RAW, inode=99), missing(PROCESSED), Action.PROCESSED, delivered=delivery()
    ),
    "delivered, raw rewritten in place (same inode) -> present": Row(
        file(RAW), missing(PROCESSED), Action.PRESENT, raw_proof=DIFFERENT, delivered=delivery()
    ),
    # without a ledger row, content alone
    "processed holds its bytes -> processed": Row(
        missing(RAW), file(PROCESSED), Action.PROCESSED, processed_proof=SAME
    ),
    "processed differs, raw missing -> download": Row(
        missing(RAW), file(PROCESSED), Action.DOWNLOAD, processed_proof=DIFFERENT
    ),
    "processed unproven, raw missing -> download and compare": Row(
        missing(RAW),
        file(PROCESSED),
        Action.DOWNLOAD,
        processed_proof=UNPROVEN,
        compare_with=(PROCESSED,),
    ),
    "raw holds its bytes -> present": Row(file(RAW), missing(PROCESSED), Action.PRESENT, SAME),
    "raw differs -> conflict": Row(file(RAW), missing(PROCESSED), Action.CONFLICT, DIFFERENT),
    "raw unproven -> download and compare with raw": Row(
        file(RAW), missing(PROCESSED), Action.DOWNLOAD, UNPROVEN, compare_with=(RAW,)
    ),
    "both unproven -> compare with both": Row(
        file(RAW),
        file(PROCESSED),
        Action.DOWNLOAD,
        UNPROVEN,
        UNPROVEN,
        compare_with=(PROCESSED, RAW),
    ),
    "processed proven wins over a differing raw": Row(
        file(RAW), file(PROCESSED), Action.PROCESSED, DIFFERENT, SAME
    ),
    "processed differs, raw holds its bytes -> present": Row(
        file(RAW), file(PROCESSED), Action.PRESENT, SAME, DIFFERENT
    ),
    # what is in the way
    "a folder at raw -> refused": Row(kind(RAW, Kind.DIR), missing(PROCESSED), Action.REFUSED),
    "a file in the way of raw's folder -> refused": Row(
        kind(RAW, Kind.BLOCKED), missing(PROCESSED), Action.REFUSED
    ),
    "a symlink or case twin at raw -> refused": Row(
        kind(RAW, Kind.OTHER), missing(PROCESSED), Action.REFUSED
    ),
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_decision_table(name: str) -> None:
    row = TABLE[name]
    got = decide(
        record(),
        MAPPED,
        row.raw,
        row.processed,
        delivered=row.delivered,
        raw_proof=row.raw_proof,
        processed_proof=row.processed_proof,
    )
    assert got.action is row.expected, got
    assert got.compare_with == row.compare_with
    if row.delivered is not None and got.action in (Action.PRESENT, Action.PROCESSED):
        assert got.matched_by == "ledger"


def test_refusals_and_folder_markers_come_first() -> None:
    assert decide(record(), Refusal("no"), None, None).action is Action.REFUSED
    assert decide(record(), FolderMarker(), None, None).action is Action.SKIPPED


# -- proofs from content -------------------------------------------------------------------


class FakeHead:
    """A HeadObject answer, and how often it was asked for."""

    def __init__(self, answer: Mapping[str, Any] | None = None) -> None:
        self.answer = dict(answer or {})
        self.calls = 0

    def __call__(self) -> Mapping[str, Any]:
        self.calls += 1
        return self.answer


def on_disk(tmp_path: Path, data: bytes) -> LocalFile:
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    return look(str(path))


def b64(value: int, width: int) -> str:
    return base64.b64encode(value.to_bytes(width, "big")).decode()


def test_a_single_part_etag_is_proven_by_md5_without_asking_s3(tmp_path: Path) -> None:
    head = FakeHead()
    proof = prove(record(), on_disk(tmp_path, DATA), head)
    assert proof == Proof(Content.SAME, "md5", f"md5:{MD5}")
    assert head.calls == 0


def test_same_size_other_bytes_differ_by_md5(tmp_path: Path) -> None:
    head = FakeHead()
    proof = prove(record(), on_disk(tmp_path, b"9876543210"), head)
    assert proof.content is Content.DIFFERENT
    assert head.calls == 1  # to rule out SSE-KMS, whose ETag is not an MD5


def test_a_size_that_differs_needs_no_read(tmp_path: Path) -> None:
    head = FakeHead()
    assert prove(record(), on_disk(tmp_path, b"short"), head).content is Content.DIFFERENT
    assert head.calls == 0


def test_sse_kms_etag_falls_back_to_the_full_object_checksum(tmp_path: Path) -> None:
    head = FakeHead({"ServerSideEncryption": "aws:kms", "ChecksumCRC32": b64(zlib.crc32(DATA), 4)})
    kms = record(etag="f" * 32)  # looks like an MD5, is not one
    assert prove(kms, on_disk(tmp_path, DATA), head).content is Content.SAME


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ChecksumCRC32", b64(zlib.crc32(DATA), 4)),
        ("ChecksumCRC32C", b64(crt.crc32c(DATA), 4)),
        ("ChecksumCRC64NVME", b64(crt.crc64nvme(DATA), 8)),
        ("ChecksumSHA256", base64.b64encode(hashlib.sha256(DATA).digest()).decode()),
        ("ChecksumSHA1", base64.b64encode(hashlib.sha1(DATA).digest()).decode()),
    ],
)
def test_a_multipart_object_is_proven_by_its_full_object_checksum(
    tmp_path: Path, field: str, value: str
) -> None:
    local = on_disk(tmp_path, DATA)
    same = prove(record(MULTIPART), local, FakeHead({field: value}))
    assert same.content is Content.SAME and same.checksums and value in same.checksums
    other = on_disk(tmp_path, b"9876543210")
    assert prove(record(MULTIPART), other, FakeHead({field: value})).content is Content.DIFFERENT


def test_a_composite_checksum_proves_nothing(tmp_path: Path) -> None:
    head = FakeHead({"ChecksumCRC32": "AAAAAA==-3", "ChecksumType": "COMPOSITE"})
    assert prove(record(MULTIPART), on_disk(tmp_path, DATA), head).content is Content.UNPROVEN


def test_no_checksum_at_all_is_unproven_not_same(tmp_path: Path) -> None:
    proof = prove(record(MULTIPART), on_disk(tmp_path, DATA), FakeHead())
    assert proof.content is Content.UNPROVEN


# -- which ledger row is this object's delivery --------------------------------------------


def test_a_row_is_the_delivery_of_exactly_its_object() -> None:
    row = delivery()
    assert row.is_of(record())
    assert not row.is_of(record(etag="b" * 32))  # another upload
    assert not row.is_of(replace(record(), last_modified=datetime(2024, 6, 1, tzinfo=UTC)))
    assert not row.is_of(record(size=SIZE + 1))
    assert not replace(row, state="staged").is_of(record())  # not yet durable under its name
    assert not replace(row, version_id="v1").is_of(replace(record(), version_id="v2"))
    assert replace(row, version_id="v1").is_of(replace(record(), version_id="v1"))
    # a row taken over from an older s3drain knows no LastModified: ETag and size decide
    assert replace(row, last_modified="").is_of(record())
