"""The one decision per object, as a pure function of the facts the worker gathered.

    processed  the ledger says this exact object was delivered (its file has moved on since),
               or a file in the processed folder holds its bytes        -> delete, no download
    present    its delivered file is still at the destination, or the file there holds its
               bytes (a run stopped between download and delete)         -> delete, no download
    download   otherwise                                                 -> fetch, verify, delete
    conflict   a file with other bytes sits at the destination           -> leave in S3, report
    refused    the key cannot be a safe path, or a folder is in the way -> leave in S3, report
    skipped    a folder marker (`dir/`, zero bytes)                      -> leave in S3, quietly

Facts are the ledger's row for this object (bucket, key, ETag, LastModified, version) and proofs
from content (`proof.py`). Where content cannot be proven without the bytes, the object is
downloaded and compared with the local file before anything is decided about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from s3drain.drain.proof import Content, Proof
from s3drain.local.ledger_rows import Delivery
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
    matched_by: str | None = None  # what proved a local copy: ledger, md5, crc32, ...
    checksums: str | None = None  # the checksum that matched, for the ledger
    compare_with: tuple[str, ...] = ()  # DOWNLOAD: local files to compare the bytes with


def same_file(local: LocalFile | None, delivery: Delivery) -> bool:
    if local is None or local.file is None or delivery.file is None:
        return False
    return (local.file.device, local.file.inode) == (delivery.file.device, delivery.file.inode)


def decide(
    record: ObjectRecord,
    mapped: MappedPath | Refusal | FolderMarker,
    raw: LocalFile | None,
    processed: LocalFile | None,
    *,
    delivered: Delivery | None = None,
    raw_proof: Proof | None = None,
    processed_proof: Proof | None = None,
) -> Decision:
    if isinstance(mapped, Refusal):
        return Decision(Action.REFUSED, mapped.reason)
    if isinstance(mapped, FolderMarker):
        return Decision(Action.SKIPPED, "folder marker (a zero-byte key ending in '/')")
    assert raw is not None and processed is not None
    if delivered is not None:
        when = f"delivered by run {delivered.run}"
        if same_file(raw, delivered):
            return Decision(Action.PRESENT, f"{when}; still at {raw.path}", "ledger")
        return Decision(Action.PROCESSED, f"{when} to {delivered.path}", "ledger")
    if processed_proof is not None and processed_proof.content is Content.SAME:
        return Decision(
            Action.PROCESSED,
            f"{processed.path} holds its bytes",
            processed_proof.how,
            processed_proof.checksums,
        )
    unproven = (
        (processed.path,)
        if processed_proof is not None and processed_proof.content is Content.UNPROVEN
        else ()
    )
    if raw.kind is Kind.FILE:
        proof = raw_proof or Proof(Content.UNPROVEN, "not checked")
        if proof.content is Content.SAME:
            return Decision(
                Action.PRESENT, f"{raw.path} holds its bytes", proof.how, proof.checksums
            )
        if proof.content is Content.DIFFERENT:
            return Decision(Action.CONFLICT, f"a different file is at {raw.path}: {proof.how}")
        return Decision(Action.DOWNLOAD, proof.how, compare_with=(*unproven, raw.path))
    if raw.kind is Kind.DIR:
        return Decision(Action.REFUSED, f"a folder is in the way at {raw.path}")
    if raw.kind is Kind.BLOCKED:
        return Decision(Action.REFUSED, f"a file is in the way of a parent folder of {raw.path}")
    if raw.kind is Kind.OTHER:
        return Decision(
            Action.REFUSED, f"{raw.path} is not a regular file (link, device or case twin)"
        )
    return Decision(Action.DOWNLOAD, compare_with=unproven)
