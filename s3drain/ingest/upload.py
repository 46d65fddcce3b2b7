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

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import describe, error_code, http_status
from s3drain.ingest.digest import (
    Digest,
    FileChanged,
    FileSlice,
    Remote,
    UploadFailed,
)
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MiB = 1024 * 1024


class KeyTaken(Exception):
    """Another object appeared at the key (If-None-Match: * failed): nothing was replaced."""


@dataclass(frozen=True)
class Uploaded:
    parts: int  # 0 for a single PutObject
    crc32: str


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

    def put(
        self, key: str, path: Path, digest: Digest, content_type: str, *, exclusive: bool
    ) -> Uploaded:
        """Upload the file. `exclusive`: only where no object is at the key (If-None-Match: *,
        checked by S3 itself, so an object that appears meanwhile is never replaced: KeyTaken)."""
        if digest.part_size:
            return self._put_multipart(key, path, digest, content_type, exclusive)
        tries = 0

        def attempt() -> None:
            nonlocal tries
            tries += 1
            condition = {"IfNoneMatch": "*"} if exclusive else {}
            try:
                with _noticing_changes(path, digest.size), FileSlice(path, 0, digest.size) as piece:
                    self.client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=_body(piece),
                        ContentLength=digest.size,
                        ContentType=content_type,
                        ChecksumAlgorithm="CRC32",
                        ChecksumCRC32=digest.crc32,
                        **condition,  # type: ignore[arg-type]
                    )
            except ClientError as exc:
                if exclusive and _taken(exc):
                    self._check_taken(key, digest, tries)
                    return
                raise

        self.retry.run(f"PutObject {key}", attempt)
        return Uploaded(parts=0, crc32=digest.crc32)

    def _check_taken(self, key: str, digest: Digest, tries: int) -> None:
        """412 on an exclusive write: after a lost answer, the object there may be our own
        upload; otherwise the key was taken by someone else."""
        if tries > 1:
            found = self.head(key)
            if found is not None and found.crc32 == digest.crc32 and found.size == digest.size:
                return
        raise KeyTaken(key)

    def _put_multipart(
        self, key: str, path: Path, digest: Digest, content_type: str, exclusive: bool
    ) -> Uploaded:
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
            self._complete(key, upload_id, parts, digest, exclusive)
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
            with (
                _noticing_changes(part.path, part.start + part.length, at_least=True),
                FileSlice(part.path, part.start, part.length) as piece,
            ):
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
        self,
        key: str,
        upload_id: str,
        parts: list[CompletedPartTypeDef],
        digest: Digest,
        exclusive: bool,
    ) -> None:
        tries = 0

        def attempt() -> None:
            nonlocal tries
            tries += 1
            condition = {"IfNoneMatch": "*"} if exclusive else {}
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    ChecksumCRC32=digest.crc32,
                    ChecksumType="FULL_OBJECT",
                    **condition,  # type: ignore[arg-type]
                )
            except ClientError as exc:
                if exclusive and _taken(exc):
                    self._check_taken(key, digest, tries)
                    return
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


@contextlib.contextmanager
def _noticing_changes(path: Path, size: int, *, at_least: bool = False) -> Iterator[None]:
    """A file cut short under a request shows as FileChanged, whatever the layer reading the
    body made of it (botocore's CRT signer, present with awscrt, wraps it in AwsCrtError)."""
    try:
        yield
    except (FileChanged, ClientError):
        raise
    except Exception:
        try:
            now = path.stat().st_size
        except OSError:
            now = -1
        if now < size if at_least else now != size:
            raise FileChanged(f"{path} changed during upload ({now:,} bytes now)") from None
        raise


def _taken(exc: ClientError) -> bool:
    return http_status(exc) == 412 or error_code(exc) == "PreconditionFailed"
