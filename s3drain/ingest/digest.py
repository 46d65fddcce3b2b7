"""What a local file's bytes are, read once before any is sent: its size, its CRC32 as S3
writes it (and each part's, for a multipart upload), and whether an object in S3 holds exactly
these bytes. `FileSlice` hands botocore a part of the file without reading it into memory."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from s3drain.checksums import crc32

MiB = 1024 * 1024


READ_CHUNK = MiB


MAX_PARTS = 10_000


class UploadFailed(Exception):
    """The file did not reach S3; nothing of it is left there."""


class FileChanged(UploadFailed):
    """The file got shorter while it was being sent."""


@dataclass(frozen=True)
class Digest:
    """What s3drain knows about a local file's bytes after one read."""

    size: int
    crc32: str  # base64 of the big-endian CRC32, as S3 writes it
    part_size: int = 0  # 0: uploaded with one PutObject
    part_crc32: tuple[str, ...] = ()

    @property
    def composite_crc32(self) -> str:
        """The checksum S3 shows for a COMPOSITE multipart upload with these parts."""
        raw = b"".join(base64.b64decode(part) for part in self.part_crc32)
        return f"{_b64_crc32(crc32(raw, 0))}-{len(self.part_crc32)}"


@dataclass(frozen=True)
class Remote:
    """The object already at the key, as HeadObject describes it."""

    size: int
    etag: str  # without quotes
    crc32: str | None  # full-object value, or `<value>-<parts>` for a composite one


def part_size_for(size: int, wanted: int) -> int:
    """`wanted`, grown in whole MiB when the file would otherwise need more than 10,000 parts."""
    needed = -(-size // MAX_PARTS)
    if needed <= wanted:
        return wanted
    return -(-needed // MiB) * MiB


def _b64_crc32(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


def digest_file(path: Path, part_size: int = 0) -> Digest:
    """CRC32 of the whole file and, with a `part_size`, of each part: one pass, 1 MiB at a time."""
    whole = 0
    parts: list[str] = []
    part = 0
    in_part = 0
    size = 0
    with open(path, "rb") as handle:
        while True:
            room = part_size - in_part if part_size else READ_CHUNK
            chunk = handle.read(min(READ_CHUNK, room))
            if not chunk:
                break
            size += len(chunk)
            whole = crc32(chunk, whole)
            if part_size:
                part = crc32(chunk, part)
                in_part += len(chunk)
                if in_part == part_size:
                    parts.append(_b64_crc32(part))
                    part, in_part = 0, 0
    if part_size and (in_part or not parts):
        parts.append(_b64_crc32(part))
    return Digest(size, _b64_crc32(whole), part_size, tuple(parts))


def file_md5(path: Path) -> str:
    md5 = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(READ_CHUNK), b""):
            md5.update(chunk)
    return md5.hexdigest()


def is_identical(local: Digest, remote: Remote, md5: Callable[[], str]) -> tuple[bool, str]:
    """Whether the object at the key holds exactly these bytes, and what decided it.

    Only a checksum or an MD5 ETag can say "same"; a size alone never does. When nothing
    comparable exists (a multipart object written without CRC32) the answer is "different",
    which costs a re-upload, never a lost file.
    """
    if remote.size != local.size:
        return False, f"size {remote.size:,} bytes"
    if remote.crc32 is not None and "-" not in remote.crc32:
        return remote.crc32 == local.crc32, "crc32"
    if remote.crc32 is not None and local.part_crc32 and remote.crc32 == local.composite_crc32:
        return True, "composite crc32"
    if len(remote.etag) == 32 and "-" not in remote.etag:
        return remote.etag == md5(), "md5"
    return False, "no comparable checksum"


class FileSlice:
    """A read-only, seekable view of `length` bytes of a file from `start`, read with pread.

    botocore needs `seek`/`tell` to sign the body and to send it; a file that ends before the
    slice does raises FileChanged instead of letting the request stall short of its length.
    """

    def __init__(self, path: Path, start: int, length: int) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._start = start
        self._length = length
        self._pos = 0
        self.name = str(path)

    def read(self, size: int = -1) -> bytes:
        left = self._length - self._pos
        want = left if size is None or size < 0 else min(size, left)
        if want <= 0:
            return b""
        data = os.pread(self._fd, want, self._start + self._pos)
        if not data:
            raise FileChanged(f"{self.name} ended {left:,} bytes early: it changed during upload")
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        self._pos = min(max(base + offset, 0), self._length)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
