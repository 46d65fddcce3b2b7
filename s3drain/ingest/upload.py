"""One local file into one S3 object: checksum it, see whether S3 already has it, upload it.

Every upload carries a CRC32 that s3drain computed itself in one read of the file before
sending a byte, so S3 checks the bytes it received against the file as it was read (a file
changed in between is refused with BadDigest instead of stored half-old, half-new). Large files
go up as a multipart upload with a FULL_OBJECT CRC32: the finished object has the same
checksum as a single PUT would give, which botocore validates on every GET in the drain.

Bodies are read from disk in slices (`FileSlice`), never held whole in memory, and each attempt
of a part opens its slice afresh, so a retry re-reads the part from disk. A multipart upload
that fails is aborted after its in-flight parts have settled, so no orphan parts stay billed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, wait
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self, cast

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import describe, error_code, http_status
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

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
        return f"{_b64_crc32(zlib.crc32(raw))}-{len(self.part_crc32)}"


@dataclass(frozen=True)
class Remote:
    """The object already at the key, as HeadObject describes it."""

    size: int
    etag: str  # without quotes
    crc32: str | None  # full-object value, or `<value>-<parts>` for a composite one


@dataclass(frozen=True)
class Uploaded:
    parts: int  # 0 for a single PutObject
    crc32: str


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
            whole = zlib.crc32(chunk, whole)
            if part_size:
                part = zlib.crc32(chunk, part)
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


def _body(piece: FileSlice) -> IO[Any]:
    # The typed client wants IO; botocore only calls read/seek/tell on it.
    return cast("IO[Any]", piece)


@dataclass(frozen=True)
class _Part:
    key: str
    upload_id: str
    path: Path
    number: int
    start: int
    length: int
    crc32: str


@dataclass(frozen=True)
class Uploader:
    """The requests of one bucket, each under the retry policy. Thread-safe, like the client."""

    client: S3Client
    retry: RetryPolicy
    bucket: str
    parts_pool: Executor  # a multipart upload's parts run here, beside other files' parts

    def head(self, key: str) -> Remote | None:
        """The object at `key`, or None. A 403 propagates: the caller decides what it means."""

        def attempt() -> Remote | None:
            try:
                answer = self.client.head_object(
                    Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"
                )
            except ClientError as exc:
                if http_status(exc) == 404:
                    return None
                raise
            return Remote(
                size=int(answer.get("ContentLength", 0)),
                etag=str(answer.get("ETag", "")).strip('"'),
                crc32=answer.get("ChecksumCRC32"),
            )

        return self.retry.run(f"HeadObject {key}", attempt)

    def put(self, key: str, path: Path, digest: Digest, content_type: str) -> Uploaded:
        if digest.part_size:
            return self._put_multipart(key, path, digest, content_type)

        def attempt() -> None:
            with FileSlice(path, 0, digest.size) as piece:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=_body(piece),
                    ContentLength=digest.size,
                    ContentType=content_type,
                    ChecksumAlgorithm="CRC32",
                    ChecksumCRC32=digest.crc32,
                )

        self.retry.run(f"PutObject {key}", attempt)
        return Uploaded(parts=0, crc32=digest.crc32)

    def _put_multipart(self, key: str, path: Path, digest: Digest, content_type: str) -> Uploaded:
        created = self.retry.run(
            f"CreateMultipartUpload {key}",
            lambda: self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ContentType=content_type,
                ChecksumAlgorithm="CRC32",
                ChecksumType="FULL_OBJECT",
            ),
        )
        upload_id = created["UploadId"]
        give_up = threading.Event()
        futures: list[Future[CompletedPartTypeDef]] = []
        try:
            for number, crc in enumerate(digest.part_crc32, start=1):
                start = (number - 1) * digest.part_size
                length = min(digest.part_size, digest.size - start)
                part = _Part(key, upload_id, path, number, start, length, crc)
                futures.append(self.parts_pool.submit(self._upload_part, part, give_up))
            # Stop at the first failed part, not at the first part still being sent.
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()
            parts = [future.result() for future in futures]
            self._complete(key, upload_id, parts, digest)
        except BaseException as exc:
            give_up.set()
            for future in futures:
                future.cancel()
            # A part still being sent when the abort lands could be stored and billed anyway.
            wait(futures)
            self._abort(key, upload_id, exc)
            raise
        return Uploaded(parts=len(digest.part_crc32), crc32=digest.crc32)

    def _upload_part(self, part: _Part, give_up: threading.Event) -> CompletedPartTypeDef:
        def attempt() -> CompletedPartTypeDef:
            if give_up.is_set():
                raise UploadFailed("another part failed")
            with FileSlice(part.path, part.start, part.length) as piece:
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=part.key,
                    UploadId=part.upload_id,
                    PartNumber=part.number,
                    Body=_body(piece),
                    ContentLength=part.length,
                    ChecksumAlgorithm="CRC32",
                    ChecksumCRC32=part.crc32,
                )
            return {"PartNumber": part.number, "ETag": answer["ETag"], "ChecksumCRC32": part.crc32}

        return self.retry.run(f"UploadPart {part.key} part {part.number}", attempt)

    def _complete(
        self, key: str, upload_id: str, parts: list[CompletedPartTypeDef], digest: Digest
    ) -> None:
        tries = 0

        def attempt() -> None:
            nonlocal tries
            tries += 1
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    ChecksumCRC32=digest.crc32,
                    ChecksumType="FULL_OBJECT",
                )
            except ClientError as exc:
                # An earlier attempt may have completed it and lost only the answer.
                if tries > 1 and error_code(exc) == "NoSuchUpload":
                    found = self.head(key)
                    if found is not None and found.crc32 == digest.crc32:
                        return
                raise

        self.retry.run(f"CompleteMultipartUpload {key}", attempt)

    def _abort(self, key: str, upload_id: str, cause: BaseException) -> None:
        try:
            self.retry.run(
                f"AbortMultipartUpload {key}",
                lambda: self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                ),
            )
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "NoSuchUpload":
                return
            raise UploadFailed(
                f"{describe(cause)}; and the multipart upload {upload_id} could not be aborted "
                f"({describe(exc)}): its parts stay billed until it is aborted or a lifecycle "
                "rule (AbortIncompleteMultipartUpload) removes it"
            ) from cause
