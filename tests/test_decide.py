"""The per-object decision table, row by row, and the `match()` rule it rests on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from s3drain.drain.decide import Action, Decision, decide, match
from s3drain.drain.settings import MatchMode
from s3drain.local.paths import FolderMarker, Kind, LocalFile, MappedPath, Refusal
from s3drain.records import ObjectRecord

DATA = b"0123456789"
SIZE = len(DATA)
MD5 = hashlib.md5(DATA).hexdigest()
OTHER_MD5 = hashlib.md5(b"9876543210").hexdigest()
MULTIPART = "a" * 32 + "-3"
RAW = "/base/raw/a.csv"
PROCESSED = "/base/processed/a.csv"
MAPPED = MappedPath(rel="a.csv", raw=RAW, processed=PROCESSED)


def record(etag: str = MD5, size: int = SIZE) -> ObjectRecord:
    return ObjectRecord(
        key="exports/a.csv", size=size, etag=etag, last_modified=datetime(2024, 5, 2, tzinfo=UTC)
    )


def missing(path: str) -> LocalFile:
    return LocalFile(path, Kind.MISSING)


UPLOADED = datetime(2024, 5, 2, tzinfo=UTC).timestamp()
AFTER_UPLOAD = UPLOADED + 3600.0  # a copy made an hour after the object was uploaded
BEFORE_UPLOAD = UPLOADED - 3600.0  # a file that existed before this upload


def file(
    path: str,
    size: int = SIZE,
    etag: str | None = None,
    md5: str | None = None,
    mtime: float = AFTER_UPLOAD,
) -> LocalFile:
    return LocalFile(path, Kind.FILE, size=size, etag=etag, md5=md5, mtime=mtime)


def kind(path: str, k: Kind) -> LocalFile:
    return LocalFile(path, k)


@dataclass(frozen=True)
class Row:
    raw: LocalFile
    processed: LocalFile
    expected: Action
    mode: MatchMode = "size"
    etag: str = MD5
    matched_by: str | None = None  # exact value when given


TABLE: dict[str, Row] = {
    # nothing local
    "nothing -> download": Row(missing(RAW), missing(PROCESSED), Action.DOWNLOAD),
    # processed
    "processed matches by size": Row(
        missing(RAW), file(PROCESSED), Action.PROCESSED, matched_by="size"
    ),
    "processed matches with recorded etag": Row(
        missing(RAW), file(PROCESSED, etag=MD5), Action.PROCESSED, matched_by="etag+size"
    ),
    "processed other etag, raw missing -> download": Row(
        missing(RAW), file(PROCESSED, etag=OTHER_MD5), Action.DOWNLOAD
    ),
    "processed other etag, raw matches -> present": Row(
        file(RAW), file(PROCESSED, etag=OTHER_MD5), Action.PRESENT, matched_by="size"
    ),
    "processed other size, raw missing -> download": Row(
        missing(RAW), file(PROCESSED, size=SIZE + 1), Action.DOWNLOAD
    ),
    "processed is a folder, raw missing -> download": Row(
        missing(RAW), kind(PROCESSED, Kind.DIR), Action.DOWNLOAD
    ),
    "processed is a symlink, raw missing -> download": Row(
        missing(RAW), kind(PROCESSED, Kind.OTHER), Action.DOWNLOAD
    ),
    "processed blocked, raw missing -> download": Row(
        missing(RAW), kind(PROCESSED, Kind.BLOCKED), Action.DOWNLOAD
    ),
    # raw
    "raw matches -> present": Row(file(RAW), missing(PROCESSED), Action.PRESENT, matched_by="size"),
    "raw matches with recorded etag -> present": Row(
        file(RAW, etag=MD5), missing(PROCESSED), Action.PRESENT, matched_by="etag+size"
    ),
    "raw bigger -> conflict": Row(file(RAW, size=SIZE + 1), missing(PROCESSED), Action.CONFLICT),
    "raw smaller -> conflict": Row(file(RAW, size=SIZE - 1), missing(PROCESSED), Action.CONFLICT),
    "raw empty -> conflict": Row(file(RAW, size=0), missing(PROCESSED), Action.CONFLICT),
    "raw other etag same size -> conflict": Row(
        file(RAW, etag=OTHER_MD5), missing(PROCESSED), Action.CONFLICT
    ),
    "raw other etag same size, processed other size -> conflict": Row(
        file(RAW, etag=OTHER_MD5), file(PROCESSED, size=1), Action.CONFLICT
    ),
    "raw is a folder -> refused": Row(kind(RAW, Kind.DIR), missing(PROCESSED), Action.REFUSED),
    "raw blocked -> refused": Row(kind(RAW, Kind.BLOCKED), missing(PROCESSED), Action.REFUSED),
    "raw symlink -> refused": Row(kind(RAW, Kind.OTHER), missing(PROCESSED), Action.REFUSED),
    # processed wins
    "both match -> processed": Row(file(RAW), file(PROCESSED), Action.PROCESSED, matched_by="size"),
    "processed matches, raw differs -> processed": Row(
        file(RAW, size=1), file(PROCESSED), Action.PROCESSED
    ),
    "processed matches, raw is a folder -> processed": Row(
        kind(RAW, Kind.DIR), file(PROCESSED), Action.PROCESSED
    ),
    # --match checksum
    "checksum: raw md5 equal -> present": Row(
        file(RAW, md5=MD5), missing(PROCESSED), Action.PRESENT, "checksum", matched_by="md5"
    ),
    "checksum: raw md5 differs, same size -> conflict": Row(
        file(RAW, md5=OTHER_MD5), missing(PROCESSED), Action.CONFLICT, "checksum"
    ),
    "checksum: raw size differs -> conflict": Row(
        file(RAW, size=SIZE + 1), missing(PROCESSED), Action.CONFLICT, "checksum"
    ),
    "checksum: raw other etag, md5 equal -> conflict": Row(
        file(RAW, etag=OTHER_MD5, md5=MD5), missing(PROCESSED), Action.CONFLICT, "checksum"
    ),
    "checksum: processed md5 equal -> processed": Row(
        missing(RAW), file(PROCESSED, md5=MD5), Action.PROCESSED, "checksum", matched_by="md5"
    ),
    "checksum: processed md5 differs, raw missing -> download": Row(
        missing(RAW), file(PROCESSED, md5=OTHER_MD5), Action.DOWNLOAD, "checksum"
    ),
    "checksum: processed md5 differs, raw md5 equal -> present": Row(
        file(RAW, md5=MD5),
        file(PROCESSED, md5=OTHER_MD5),
        Action.PRESENT,
        "checksum",
        matched_by="md5",
    ),
    "checksum: both md5 equal -> processed": Row(
        file(RAW, md5=MD5),
        file(PROCESSED, md5=MD5),
        Action.PROCESSED,
        "checksum",
        matched_by="md5",
    ),
    "checksum: multipart, raw same size -> present": Row(
        file(RAW), missing(PROCESSED), Action.PRESENT, "checksum", etag=MULTIPART
    ),
    "checksum: multipart, raw size differs -> conflict": Row(
        file(RAW, size=SIZE + 1), missing(PROCESSED), Action.CONFLICT, "checksum", etag=MULTIPART
    ),
    "checksum: multipart, processed same size -> processed": Row(
        missing(RAW), file(PROCESSED), Action.PROCESSED, "checksum", etag=MULTIPART
    ),
    "checksum: multipart, nothing -> download": Row(
        missing(RAW), missing(PROCESSED), Action.DOWNLOAD, "checksum", etag=MULTIPART
    ),
    # size mode ignores md5 entirely
    "size: raw md5 differs but size equal -> present": Row(
        file(RAW, md5=OTHER_MD5), missing(PROCESSED), Action.PRESENT, matched_by="size"
    ),
    "size: multipart, raw same size -> present": Row(
        file(RAW), missing(PROCESSED), Action.PRESENT, etag=MULTIPART, matched_by="size"
    ),
}


@pytest.mark.parametrize("row", list(TABLE.values()), ids=list(TABLE))
def test_decision_table(row: Row) -> None:
    decision = decide(record(row.etag), MAPPED, row.raw, row.processed, row.mode)
    assert decision.action is row.expected, decision
    if row.matched_by is not None:
        assert decision.matched_by == row.matched_by
    if row.expected in (Action.DOWNLOAD, Action.CONFLICT, Action.REFUSED):
        assert decision.matched_by is None


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        (file(RAW, size=SIZE + 5), str(SIZE + 5)),
        (file(RAW, etag=OTHER_MD5), OTHER_MD5),
    ],
    ids=["size", "etag"],
)
def test_conflict_reason_names_the_file_and_the_difference(raw: LocalFile, word: str) -> None:
    decision = decide(record(), MAPPED, raw, missing(PROCESSED), "size")
    assert decision.action is Action.CONFLICT
    assert RAW in decision.reason
    assert word in decision.reason


@pytest.mark.parametrize("k", [Kind.DIR, Kind.BLOCKED, Kind.OTHER])
def test_refused_reason_names_the_path(k: Kind) -> None:
    decision = decide(record(), MAPPED, kind(RAW, k), missing(PROCESSED), "size")
    assert decision.action is Action.REFUSED
    assert RAW in decision.reason


@pytest.mark.parametrize(("action", "path"), [(Action.PRESENT, RAW), (Action.PROCESSED, PROCESSED)])
def test_match_reason_names_the_matching_file(action: Action, path: str) -> None:
    raw = file(RAW)
    processed = file(PROCESSED) if action is Action.PROCESSED else missing(PROCESSED)
    decision = decide(record(), MAPPED, raw, processed, "size")
    assert decision.action is action
    assert path in decision.reason


@pytest.mark.parametrize("where", ["raw", "processed"])
def test_multipart_fallback_to_size_is_said(where: str) -> None:
    raw = file(RAW) if where == "raw" else missing(RAW)
    processed = file(PROCESSED) if where == "processed" else missing(PROCESSED)
    decision = decide(record(MULTIPART), MAPPED, raw, processed, "checksum")
    assert decision.action is (Action.PRESENT if where == "raw" else Action.PROCESSED)
    assert decision.matched_by is not None
    said = decision.matched_by.lower()
    assert said.startswith("size")
    assert "fell back" in said or "not an md5" in said


@pytest.mark.parametrize("raw_kind", list(Kind))
@pytest.mark.parametrize("mode", ["size", "checksum"])
def test_refusal_is_refused_whatever_is_on_disk(raw_kind: Kind, mode: MatchMode) -> None:
    refusal = Refusal("the key has a '..' segment, which would leave the download folder")
    raw = file(RAW) if raw_kind is Kind.FILE else kind(RAW, raw_kind)
    decision = decide(record(), refusal, raw, file(PROCESSED), mode)
    assert decision == Decision(Action.REFUSED, refusal.reason)


def test_refusal_needs_no_lookups() -> None:
    decision = decide(record(), Refusal("bad key"), None, None, "size")
    assert decision == Decision(Action.REFUSED, "bad key")


@pytest.mark.parametrize("mode", ["size", "checksum"])
def test_folder_marker_is_skipped(mode: MatchMode) -> None:
    marker_record = ObjectRecord(
        key="exports/dir/",
        size=0,
        etag=hashlib.md5(b"").hexdigest(),
        last_modified=datetime(2024, 5, 2, tzinfo=UTC),
    )
    decision = decide(marker_record, FolderMarker(), None, None, mode)
    assert decision.action is Action.SKIPPED
    assert decision.matched_by is None
    assert "folder" in decision.reason


# --- match() on its own -------------------------------------------------------------------------


@pytest.mark.parametrize("k", [Kind.MISSING, Kind.DIR, Kind.BLOCKED, Kind.OTHER])
@pytest.mark.parametrize("mode", ["size", "checksum"])
def test_match_needs_a_regular_file(k: Kind, mode: MatchMode) -> None:
    same, _how = match(record(), LocalFile(RAW, k, size=SIZE, md5=MD5, mtime=AFTER_UPLOAD), mode)
    assert same is False


@pytest.mark.parametrize(
    ("local", "mode", "etag", "expected"),
    [
        (file(RAW), "size", MD5, (True, "size")),
        (file(RAW, etag=MD5), "size", MD5, (True, "etag+size")),
        (file(RAW, md5=MD5), "checksum", MD5, (True, "md5")),
        (file(RAW, etag=MD5, md5=MD5), "checksum", MD5, (True, "md5")),
    ],
)
def test_match_true_and_how(
    local: LocalFile, mode: MatchMode, etag: str, expected: tuple[bool, str]
) -> None:
    assert match(record(etag), local, mode) == expected


@pytest.mark.parametrize(
    ("local", "mode", "etag"),
    [
        (file(RAW, size=SIZE + 1), "size", MD5),
        (file(RAW, etag=OTHER_MD5), "size", MD5),
        (file(RAW, etag=MD5), "size", OTHER_MD5),
        (file(RAW, md5=OTHER_MD5), "checksum", MD5),
        (file(RAW, md5=None), "checksum", MD5),  # size matched but no MD5 was computed
        (file(RAW, size=SIZE + 1, md5=MD5), "checksum", MD5),
        (file(RAW, etag=MD5 + "-2"), "checksum", MD5),
    ],
)
def test_match_false_says_why(local: LocalFile, mode: MatchMode, etag: str) -> None:
    same, how = match(record(etag), local, mode)
    assert same is False
    assert how.strip() != ""


def test_match_ignores_md5_in_size_mode() -> None:
    assert match(record(), file(RAW, md5=OTHER_MD5), "size") == (True, "size")


def test_record_etag_shapes() -> None:
    assert record(MD5).etag_is_md5 is True
    assert record(MULTIPART).etag_is_md5 is False
    assert record(MULTIPART).is_multipart is True
    assert record(MD5).is_multipart is False
    assert record(MD5).quoted_etag == f'"{MD5}"'


# --- a file without a recorded ETag vouches only for an object uploaded before it was written --


def test_an_older_copy_without_etag_is_not_the_processed_object() -> None:
    """The ETL copied last week's a.csv into processed/; the producer has since uploaded a new
    a.csv of the same size. The copy must not get the new upload deleted."""
    old_copy = file(PROCESSED, mtime=BEFORE_UPLOAD)
    decision = decide(record(), MAPPED, missing(RAW), old_copy, "size")
    assert decision.action is Action.DOWNLOAD


def test_an_older_raw_file_without_etag_is_a_conflict() -> None:
    decision = decide(record(), MAPPED, file(RAW, mtime=BEFORE_UPLOAD), missing(PROCESSED), "size")
    assert decision.action is Action.CONFLICT
    assert "older than the object" in decision.reason


def test_a_copy_within_the_upload_second_does_not_count() -> None:
    # S3's LastModified has whole seconds: a file written in the same second cannot be
    # told apart from one written just before the upload, so it is not trusted.
    same_second = file(PROCESSED, mtime=UPLOADED + 0.5)
    decision = decide(record(), MAPPED, missing(RAW), same_second, "size")
    assert decision.action is Action.DOWNLOAD


@pytest.mark.parametrize(
    ("local", "mode"),
    [
        (file(PROCESSED, etag=MD5, mtime=BEFORE_UPLOAD), "size"),  # s3drain recorded it
        (file(PROCESSED, md5=MD5, mtime=BEFORE_UPLOAD), "checksum"),  # the bytes are the same
    ],
)
def test_an_older_copy_still_counts_when_its_identity_is_known(
    local: LocalFile, mode: MatchMode
) -> None:
    decision = decide(record(), MAPPED, missing(RAW), local, mode)
    assert decision.action is Action.PROCESSED
