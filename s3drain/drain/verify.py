"""What a download's answers must say, and how it was proven: the ETag check, the MD5 rule for
single-part ETags, and the labels the audit log shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from s3drain.records import ObjectRecord

# 512 KiB reads: as cheap in CPU as 1 MiB (measured), while 32 threads streaming at once keep
# peak RSS near 75 MiB (1 MiB reads took it past 100 MiB, near the 128 MiB budget).
CHUNK = 512 * 1024
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
_SSE_WITHOUT_MD5_ETAG = ("aws:kms", "aws:kms:dsse")


class ObjectChanged(Exception):
    """The object was overwritten (412) or removed (404) after it was listed."""


class Interrupted(Exception):
    """The run is stopping; this object was not finished and stays in S3."""


@dataclass(frozen=True)
class Verified:
    label: str  # for the audit log: crc32, md5, size (multipart ETag ...), ...
    checksums: str | None  # what matched: `crc32:<b64>`, `md5:<hex>`
    version_id: str | None  # what the GET returned, in a versioned bucket


def check_etag(record: ObjectRecord, response: Mapping[str, Any]) -> None:
    """Some servers ignore If-Match (the s3rver family on GET, fauxqs on HEAD): the answer's
    own ETag must be the listed one, or these are another version's bytes."""
    answered = str(response.get("ETag") or "").strip('"')
    if answered and answered != record.etag:
        raise ObjectChanged(
            f"the server sent another version (ETag {answered}, listed {record.etag})"
        )


def md5_applies(record: ObjectRecord, response: Mapping[str, Any]) -> bool:
    """A 32-hex ETag is the MD5 of the bytes, unless the object is encrypted with SSE-KMS or
    SSE-C (which only a GET or HEAD tells)."""
    sse_kms = response.get("ServerSideEncryption") in _SSE_WITHOUT_MD5_ETAG
    return record.etag_is_md5 and not sse_kms and not response.get("SSECustomerAlgorithm")


def label(record: ObjectRecord) -> str:
    """The audit log's word for an object only its byte count could prove."""
    if record.is_multipart:
        return "size (multipart ETag without a full-object checksum: only the size was verified)"
    if record.etag_is_md5:
        return "size (SSE-KMS or SSE-C: the ETag is not an MD5)"
    return "size"
