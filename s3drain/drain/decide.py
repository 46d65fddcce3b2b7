"""The one decision per object, as a pure function of what the listing and the disk said.

    processed  the processed folder holds a matching file        -> delete, no download
    present    the destination holds a matching file             -> delete, no download
    download   otherwise                                         -> fetch, verify, then delete
    conflict   a different file sits at the destination          -> leave in S3, report
    refused    the key cannot be a safe path, or a folder is in the way -> leave in S3, report
    skipped    a folder marker (`dir/`, zero bytes)              -> leave in S3, quietly

"Matching": when s3drain recorded the object's ETag on the file at download, that ETag must be
the listed one (so an older download never vouches for a newer upload); then the size, or with
--match checksum the MD5 against a single-part ETag. A file without a recorded ETag (the ETL
copied it, or the file system keeps no extended attributes) matches by size only if it was
written after the object was uploaded: a copy cannot vouch for bytes that did not exist yet.
S3 times have whole seconds, so "after" means at least a second after.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from s3drain.drain.settings import MatchMode
from s3drain.local.paths import FolderMarker, Kind, LocalFile, MappedPath, Refusal
from s3drain.records import ObjectRecord


class Action(StrEnum):
    PROCESSED = "processed"
    PRESENT = "present"
    DOWNLOAD = "download"
    CONFLICT = "conflict"
    REFUSED = "refused"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""
    matched_by: str | None = None  # how a local file was judged the same: size, md5, etag+size


def match(record: ObjectRecord, local: LocalFile, mode: MatchMode) -> tuple[bool, str]:
    """(is it the same object?, how that was judged)."""
    if local.kind is not Kind.FILE:
        return False, "no file"
    if local.etag is not None and local.etag != record.etag:
        return False, f"it was downloaded from another version (ETag {local.etag})"
    if local.size != record.size:
        return False, f"it is {local.size} bytes, the object {record.size}"
    if mode == "checksum" and record.etag_is_md5:
        if local.md5 != record.etag:
            return False, "its MD5 differs from the object's ETag"
        return True, "md5"
    fallback = " (the ETag is not an MD5, so --match checksum fell back to size)"
    note = fallback if mode == "checksum" else ""
    if local.etag is not None:
        return True, "etag+size" + note
    if local.mtime < record.last_modified.timestamp() + 1.0:
        return False, (
            "it is older than the object and carries no recorded ETag, so it cannot be the "
            "same upload"
        )
    return True, "size" + note


def decide(
    record: ObjectRecord,
    mapped: MappedPath | Refusal | FolderMarker,
    raw: LocalFile | None,
    processed: LocalFile | None,
    mode: MatchMode,
) -> Decision:
    if isinstance(mapped, Refusal):
        return Decision(Action.REFUSED, mapped.reason)
    if isinstance(mapped, FolderMarker):
        return Decision(Action.SKIPPED, "folder marker (a zero-byte key ending in '/')")
    assert raw is not None and processed is not None
    same, how = match(record, processed, mode)
    if same:
        return Decision(Action.PROCESSED, f"matches {processed.path}", matched_by=how)
    if raw.kind is Kind.FILE:
        same, how = match(record, raw, mode)
        if same:
            return Decision(Action.PRESENT, f"matches {raw.path}", matched_by=how)
        return Decision(Action.CONFLICT, f"a different file is at {raw.path}: {how}")
    if raw.kind is Kind.DIR:
        return Decision(Action.REFUSED, f"a folder is in the way at {raw.path}")
    if raw.kind is Kind.BLOCKED:
        return Decision(Action.REFUSED, f"a file is in the way of a parent folder of {raw.path}")
    if raw.kind is Kind.OTHER:
        return Decision(
            Action.REFUSED, f"{raw.path} is not a regular file (link, device or case twin)"
        )
    return Decision(Action.DOWNLOAD)
