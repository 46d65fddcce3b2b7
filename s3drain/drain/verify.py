"""What a download's answers must say, and how it was proven: the ETag check, the MD5 rule for
single-part ETags, the plan the first answer sets (which checksum proves the bytes), the final
comparison, and the labels the audit log shows.

Light on imports: the fetch processes use it too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from s3drain.checksums import Crc, Expected, Hash, full_object_checksum, is_combinable, new_hash
from s3drain.records import UNKNOWN_TIME, ObjectRecord

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
    last_modified: datetime | None = None  # what the GET said, for an object no listing dated


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


class Mismatch(Exception):
    """The bytes received are not the object's: a checksum or the length disagrees."""


@dataclass(frozen=True)
class Plan:
    """How a download's bytes will be proven, set by its first answer: S3's full-object checksum
    where the object has one (a CRC is computed per segment and combined; an MD5 or SHA follows
    the bytes in order), else the MD5 of a single-part ETag, else only the byte count."""

    expected: Expected | None
    crc: str | None  # a combinable CRC's name
    inline: str | None  # "md5" or a SHA's name: hashed over the bytes in order

    def new_crc(self) -> Crc | None:
        return Crc(self.crc) if self.crc is not None else None

    def new_inline(self) -> Hash | None:
        return new_hash(self.inline) if self.inline is not None else None


def plan(record: ObjectRecord, fields: Mapping[str, Any]) -> Plan:
    expected = full_object_checksum(fields)
    if expected is not None and is_combinable(expected.name):
        return Plan(expected, expected.name, None)
    if expected is not None:
        return Plan(expected, None, expected.name)
    if md5_applies(record, fields):
        return Plan(None, None, "md5")
    return Plan(None, None, None)


def conclude(
    p: Plan,
    record: ObjectRecord,
    crc: Crc | None,
    inline: Hash | None,
    answer: Mapping[str, Any],
) -> Verified:
    """The whole object's CRC (combined) or in-order hash against what S3 said (`answer`: the
    first GET's fields); raises Mismatch."""
    version_id = answer.get("VersionId")
    # The GET's date matters only where no listing dated the object (an event named it).
    modified = last_modified(answer) if record.last_modified == UNKNOWN_TIME else None
    if p.expected is not None and crc is not None:
        if crc.b64() != p.expected.value:
            raise Mismatch(f"{p.expected.name} {crc.b64()} does not match S3's {p.expected}")
        return Verified(p.expected.name, str(p.expected), version_id, modified)
    if p.inline is not None and inline is not None:
        md5 = p.inline == "md5"
        value = inline.hexdigest() if md5 else inline.b64()
        wanted = record.etag if md5 else p.expected.value if p.expected else ""
        if value != wanted:
            raise Mismatch(f"{p.inline} {value} does not match {wanted}")
        return Verified(p.inline, f"{p.inline}:{value}", version_id, modified)
    return Verified(label(record), None, version_id, modified)


def last_modified(answer: Mapping[str, Any]) -> datetime | None:
    """S3's LastModified in a GET or HEAD answer: botocore's datetime, or the header's text
    (RFC 1123, whole seconds, as listings show it) from a direct GET."""
    value = answer.get("LastModified")
    if isinstance(value, datetime) or value is None:
        return value
    try:
        parsed = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
