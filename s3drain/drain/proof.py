"""Does a local file hold exactly an object's bytes? Answered from content only.

A file that no ledger row vouches for (the ETL copied it, an older s3drain wrote it, a user put
it there) counts as the object only when its bytes prove it: the MD5 against a single-part ETag,
or S3's full-object checksum (CRC64NVME, CRC32C, CRC32, SHA1, SHA256), asked for with a HEAD
when the listing cannot tell. Where neither exists (a multipart ETag without a full-object
checksum) the answer is "unproven", and the drain downloads the object to compare bytes. Size,
mtime, clocks and extended attributes never vouch for anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from s3drain.checksums import file_digest, full_object_checksum
from s3drain.local.paths import LocalFile
from s3drain.records import ObjectRecord

_SSE_WITHOUT_MD5_ETAG = ("aws:kms", "aws:kms:dsse")


class Content(StrEnum):
    SAME = "same"
    DIFFERENT = "different"
    UNPROVEN = "unproven"  # nothing cheap can tell: compare bytes after a download


@dataclass(frozen=True, slots=True)
class Proof:
    content: Content
    how: str  # md5, crc32, ... or why it differs / cannot be told
    checksums: str | None = None  # the checksum that matched, `md5:<hex>` or `crc32:<b64>`


def etag_is_md5(record: ObjectRecord, head: Mapping[str, Any]) -> bool:
    """A 32-hex ETag is the MD5 of the bytes, unless the object is encrypted with SSE-KMS or
    SSE-C (which only a GET or HEAD tells)."""
    sse_kms = head.get("ServerSideEncryption") in _SSE_WITHOUT_MD5_ETAG
    return record.etag_is_md5 and not sse_kms and not head.get("SSECustomerAlgorithm")


def prove(record: ObjectRecord, local: LocalFile, head: Callable[[], Mapping[str, Any]]) -> Proof:
    """`head` answers HeadObject for this very object (If-Match on its ETag, checksum mode on);
    it is called at most when the cheap proofs cannot decide."""
    if local.size != record.size:
        return Proof(Content.DIFFERENT, f"it is {local.size:,} bytes, the object {record.size:,}")
    if record.etag_is_md5:
        md5 = file_digest(local.path, "md5")
        if md5 == record.etag:
            return Proof(Content.SAME, "md5", f"md5:{md5}")
        if etag_is_md5(record, head()):
            return Proof(Content.DIFFERENT, "its MD5 differs from the object's ETag")
    expected = full_object_checksum(head())
    if expected is None:
        return Proof(
            Content.UNPROVEN,
            "the object has no checksum of its whole content (multipart ETag): bytes compared "
            "after a download",
        )
    value = file_digest(local.path, expected.name)
    if value == expected.value:
        return Proof(Content.SAME, expected.name, str(expected))
    return Proof(Content.DIFFERENT, f"its {expected.name.upper()} differs from the object's")
