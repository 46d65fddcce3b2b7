"""Checksums s3drain computes itself, as S3 writes them.

S3's full-object checksums (`x-amz-checksum-crc64nvme`, `-crc32c`, `-crc32`, `-sha1`, `-sha256`)
are the base64 of the big-endian digest. CRC32C and CRC64NVME come from awscrt (what botocore
itself uses for them), CRC32 from zlib-ng: each runs at 14-20 GB/s with the CPU's carry-less
multiply, where the standard library's zlib.crc32 (and awscrt's CRC32) manage about 2 GB/s. CRC32
is what the AWS CLI and SDKs put on every upload by default, so it is the checksum most objects
are proven by; at 2 GB/s it was a quarter of s3drain's CPU per GiB. Two CRCs of adjacent blocks
combine into the CRC of both without reading the bytes again (awscrt), so ranges fetched out of
order still prove the whole object in one pass per byte. MD5 (a single-part ETag) and the SHAs do
not combine; they follow bytes in order.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

READ_CHUNK = 1024 * 1024

# Fastest first: when an object carries several, the cheapest one proves it.
FULL_OBJECT_ALGORITHMS = ("crc64nvme", "crc32c", "crc32", "sha1", "sha256")
RESPONSE_FIELDS = {name: f"Checksum{name.upper()}" for name in FULL_OBJECT_ALGORITHMS}


@dataclass(frozen=True)
class _CrcKind:
    width: int  # bytes
    update: Callable[[bytes | memoryview, int], int]
    combine: Callable[[int, int, int], int]


def _native(module: str, name: str) -> Callable[..., int]:
    """A native checksum function, loaded on first use: awscrt's library costs a fetch process
    50 ms of CPU to load, and an object proven by MD5 needs neither it nor zlib-ng."""
    loaded: list[Callable[..., int]] = []

    def call(*args: Any) -> int:
        if not loaded:
            loaded.append(getattr(importlib.import_module(module), name))
        return loaded[0](*args)

    return call


crc32: Callable[[bytes | memoryview, int], int] = _native("zlib_ng.zlib_ng", "crc32")
"""zlib.crc32, at zlib-ng's speed: the same values, for S3's CRC32 and for an upload's parts."""

_CRCS: Mapping[str, _CrcKind] = {
    "crc32": _CrcKind(4, crc32, _native("awscrt.checksums", "combine_crc32")),
    "crc32c": _CrcKind(
        4, _native("awscrt.checksums", "crc32c"), _native("awscrt.checksums", "combine_crc32c")
    ),
    "crc64nvme": _CrcKind(
        8,
        _native("awscrt.checksums", "crc64nvme"),
        _native("awscrt.checksums", "combine_crc64nvme"),
    ),
}


class Digest(Protocol):
    name: str

    def update(self, data: bytes | memoryview) -> None: ...

    def b64(self) -> str: ...


class Crc:
    """A running CRC over a block of bytes; `then` appends another block's CRC."""

    def __init__(self, name: str, value: int = 0, length: int = 0) -> None:
        self.name = name
        self._kind = _CRCS[name]
        self.value = value
        self.length = length

    def update(self, data: bytes | memoryview) -> None:
        self.value = self._kind.update(data, self.value)
        self.length += len(data)

    def then(self, following: Crc) -> Crc:
        """The CRC of this block followed by `following`'s, without their bytes."""
        if following.length == 0:
            return self
        value = self._kind.combine(self.value, following.value, following.length)
        return Crc(self.name, value, self.length + following.length)

    def b64(self) -> str:
        return base64.b64encode(self.value.to_bytes(self._kind.width, "big")).decode("ascii")


class Hash:
    def __init__(self, name: str) -> None:
        self.name = name
        self._hash = hashlib.new(name)

    def update(self, data: bytes | memoryview) -> None:
        self._hash.update(data)

    def b64(self) -> str:
        return base64.b64encode(self._hash.digest()).decode("ascii")

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def is_combinable(name: str) -> bool:
    return name in _CRCS


def new(name: str) -> Digest:
    """A running digest: a CRC, `sha1`/`sha256` (base64, as S3 shows them) or `md5`."""
    return Crc(name) if name in _CRCS else Hash(name)


def md5() -> Hash:
    return Hash("md5")


def new_hash(name: str) -> Hash:
    """MD5 or a SHA: followed in byte order (they do not combine)."""
    return Hash(name)


@dataclass(frozen=True)
class Expected:
    """A full-object checksum S3 holds for an object: algorithm and base64 value."""

    name: str
    value: str

    def __str__(self) -> str:
        return f"{self.name}:{self.value}"


def full_object_checksum(response: Mapping[str, Any]) -> Expected | None:
    """The cheapest full-object checksum in a GetObject/HeadObject answer (sent with
    ChecksumMode=ENABLED). A composite multipart checksum (`<value>-<parts>`, or ChecksumType
    COMPOSITE) describes the parts, not the object: it proves nothing here."""
    if response.get("ChecksumType") == "COMPOSITE":
        return None
    for name in FULL_OBJECT_ALGORITHMS:
        value = response.get(RESPONSE_FIELDS[name])
        if isinstance(value, str) and value and "-" not in value:
            return Expected(name, value)
    return None


def file_digest(path: str, name: str) -> str:
    """The digest of a local file's bytes: base64 for S3's algorithms, hex for `md5` (as in an
    ETag)."""
    digest = md5() if name == "md5" else new(name)
    buffer = bytearray(READ_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
    if isinstance(digest, Hash) and name == "md5":
        return digest.hexdigest()
    return digest.b64()
