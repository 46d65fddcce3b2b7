"""What S3's wire formats say, for the bench's in-memory endpoint (benchmarks/memserver.py):
a listing's page, a Range header, an ETag condition, an aws-chunked body and its trailer."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote
from xml.sax.saxutils import escape

CHECKSUMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


@dataclass(frozen=True, slots=True)
class Page:
    keys: list[str]
    prefixes: list[str]
    last: str  # the last key or common prefix: where the next page starts
    truncated: bool


def page(keys: list[str], prefix: str, delimiter: str, after: str, max_keys: int) -> Page:
    """One page of a listing of the sorted ``keys``: those under ``prefix`` after ``after``,
    rolled up at ``delimiter`` into common prefixes, at most ``max_keys`` of both."""
    index = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, prefix)
    if delimiter and after.endswith(delimiter):
        # The marker is a common prefix of the last page: past every key under it.
        index = bisect.bisect_left(keys, past(after))
    found: list[str] = []
    prefixes: list[str] = []
    last = ""
    while index < len(keys) and keys[index].startswith(prefix):
        if len(found) + len(prefixes) >= max_keys:
            return Page(found, prefixes, last, truncated=True)
        key = keys[index]
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            last = key[: cut + len(delimiter)]
            prefixes.append(last)
            index = bisect.bisect_left(keys, past(last))
        else:
            found.append(key)
            last = key
            index += 1
    return Page(found, prefixes, last, truncated=False)


def past(common: str) -> str:
    """The least string above every string that starts with ``common``."""
    return common[:-1] + chr(ord(common[-1]) + 1)


def key_text(key: str, url: bool) -> str:
    return quote(key, safe="/") if url else escape(key)


def same_etag(wanted: str, etag: str) -> bool:
    return wanted.strip() == "*" or wanted.strip().strip('"') == etag.strip('"')


def byte_range(span: str, size: int) -> tuple[int, int] | None:
    """The inclusive bounds of one ``bytes=`` range, or None when none of it is in the object."""
    unit, _, spec = span.partition("=")
    first, _, last = spec.partition("-")
    if unit.strip() != "bytes" or "," in spec:
        return None
    if not first:
        length = int(last)
        if length <= 0 or size == 0:
            return None
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


def payload(headers: Mapping[str, str], body: bytes) -> tuple[bytes, tuple[str, str] | None]:
    """The object's bytes, decoded from aws-chunked where it is, and the full-object checksum
    the client sent (a header, or the chunked body's trailer)."""
    trailer: dict[str, str] = {}
    if "aws-chunked" in headers.get("content-encoding", "") or headers.get(
        "x-amz-content-sha256", ""
    ).startswith("STREAMING-"):
        body, trailer = dechunk(body)
    for algorithm in CHECKSUMS:
        name = f"x-amz-checksum-{algorithm}"
        value = headers.get(name) or trailer.get(name)
        if value:
            return body, (algorithm, value)
    return body, None


def dechunk(body: bytes) -> tuple[bytes, dict[str, str]]:
    chunks: list[bytes] = []
    trailer: dict[str, str] = {}
    at = 0
    while True:
        eol = body.index(b"\r\n", at)
        size = int(body[at:eol].split(b";", 1)[0], 16)
        at = eol + 2
        if size == 0:
            break
        chunks.append(body[at : at + size])
        at += size + 2
    for line in body[at:].split(b"\r\n"):
        name, colon, value = line.decode().partition(":")
        if colon:
            trailer[name.strip().lower()] = value.strip()
    return b"".join(chunks), trailer
