"""Probe the server, never trust it: which conditional deletes does it honour?

AWS S3 refuses a delete whose `If-Match` (DeleteObject) or per-key `ETag` (DeleteObjects) does
not match the object; many other servers ignore both and delete anyway. The probe asks each form
once, on a random key that does not exist under the prefix, so nothing real is at risk:

- a server that honours the condition answers with an error for that key (412, or 404 for a
  missing key);
- one that ignores it answers "deleted" (and in a versioned bucket leaves a delete marker,
  which the probe removes by the VersionId the answer gives);
- 501 NotImplemented, or a request the server rejects outright, means "not implemented".

A 404 only counts when an unconditional delete of another missing key is answered "deleted"
(as S3 does): a server that answers 404 to any delete of a missing key tells nothing, and the
probe says "inconclusive" rather than guess.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import AbortError, ConfigError, describe, error_code, http_status
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy

PROBE_NAME = ".s3drain-probe-"
CACHE_SECONDS = 86400.0


class Answer(StrEnum):
    HONOURED = "honoured"
    IGNORED = "ignored"
    NOT_IMPLEMENTED = "not-implemented"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class ProbeResult:
    delete_object_if_match: Answer
    delete_objects_etag: Answer
    probed_at: float
    cached: bool = False

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("cached")
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ProbeResult:
        data = json.loads(text)
        return cls(
            Answer(data["delete_object_if_match"]),
            Answer(data["delete_objects_etag"]),
            float(data["probed_at"]),
            cached=True,
        )

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.probed_at))
        return (
            f"DeleteObject + If-Match {self.delete_object_if_match}, DeleteObjects + ETag "
            f"{self.delete_objects_etag} (probed {when}{', cached' if self.cached else ''})"
        )


def _random_etag() -> str:
    return f'"{uuid.uuid4().hex}"'


def _denied(operation: str, bucket: str) -> ConfigError:
    return ConfigError(
        f"S3 denied {operation} (AccessDenied) on s3://{bucket}: the credentials need "
        "s3:DeleteObject on the prefix, or run with --no-delete",
    )


@dataclass(frozen=True)
class _Prober:
    client: S3Client
    bucket: str
    folder: str  # the prefix's folder: the probe's keys live there, for prefix-scoped policies
    retry: RetryPolicy

    def key(self) -> str:
        return f"{self.folder}{PROBE_NAME}{uuid.uuid4().hex}"

    def _call(self, what: str, operation: Any, **params: Any) -> Mapping[str, Any]:
        try:
            return self.retry.run(f"{what} (probe)", partial(operation, **params))
        except ClientError:
            raise
        except BotoCoreError as exc:
            raise AbortError(
                f"cannot probe the server's conditional deletes: {describe(exc)}; nothing was "
                "changed"
            ) from None

    def _remove_marker(self, key: str, answer: Mapping[str, Any]) -> None:
        """An ignored condition in a versioned bucket left a delete marker: remove exactly it."""
        version = answer.get("VersionId") or answer.get("DeleteMarkerVersionId")
        if not (answer.get("DeleteMarker") and version):
            return
        try:
            self._call(
                "DeleteObject (the probe's delete marker)",
                self.client.delete_object,
                Bucket=self.bucket,
                Key=key,
                VersionId=version,
            )
        except ClientError as exc:
            # Left unhandled this ended the run as a crash (exit 70); it is a setting to fix.
            left = f"s3://{self.bucket}/{key} (version {version})"
            if error_code(exc) == "AccessDenied" or http_status(exc) == 403:
                raise ConfigError(
                    f"S3 denied removing the probe's delete marker {left} (AccessDenied): in a "
                    "versioned bucket the credentials need s3:DeleteObjectVersion on the prefix "
                    "(deletes name versions there), or run with --no-delete; nothing else was "
                    "changed"
                ) from None
            raise AbortError(
                f"cannot remove the probe's delete marker {left}: {describe(exc)}; nothing "
                "else was changed"
            ) from None

    def delete_object(self) -> Answer:
        key = self.key()
        try:
            answer = self._call(
                "DeleteObject + If-Match",
                self.client.delete_object,
                Bucket=self.bucket,
                Key=key,
                IfMatch=_random_etag(),
            )
        except ClientError as exc:
            return self._refusal(exc, "DeleteObject", self._missing_key_control_single)
        self._remove_marker(key, answer)
        return Answer.IGNORED

    def _missing_key_control_single(self) -> bool:
        """Does an unconditional delete of a missing key succeed (as on S3)?"""
        key = self.key()
        try:
            answer = self._call(
                "DeleteObject", self.client.delete_object, Bucket=self.bucket, Key=key
            )
        except ClientError as exc:
            if error_code(exc) == "AccessDenied":
                raise _denied("DeleteObject", self.bucket) from None
            return False
        self._remove_marker(key, answer)
        return True

    def delete_objects(self) -> Answer:
        key = self.key()
        try:
            answer = self._call(
                "DeleteObjects + ETag",
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key, "ETag": _random_etag()}], "Quiet": False},
            )
        except ClientError as exc:
            return self._refusal(exc, "DeleteObjects", self._missing_key_control_batch)
        for error in answer.get("Errors", []):
            code = str(error.get("Code") or "")
            if code == "AccessDenied":
                raise _denied("DeleteObjects", self.bucket)
            if code in ("PreconditionFailed", "412"):
                return Answer.HONOURED
            if code in ("NoSuchKey", "404"):
                return Answer.HONOURED if self._missing_key_control_batch() else Answer.INCONCLUSIVE
            if code in ("NotImplemented", "NotSupported"):
                return Answer.NOT_IMPLEMENTED
            return Answer.INCONCLUSIVE
        for deleted in answer.get("Deleted", []):
            self._remove_marker(key, deleted)
        return Answer.IGNORED

    def _missing_key_control_batch(self) -> bool:
        key = self.key()
        try:
            answer = self._call(
                "DeleteObjects",
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key}], "Quiet": False},
            )
        except ClientError as exc:
            if error_code(exc) == "AccessDenied" or http_status(exc) == 403:
                raise _denied("DeleteObjects", self.bucket) from None
            return False
        if any(e.get("Code") == "AccessDenied" for e in answer.get("Errors", [])):
            raise _denied("DeleteObjects", self.bucket)
        for deleted in answer.get("Deleted", []):
            self._remove_marker(key, deleted)
        return bool(answer.get("Deleted")) and not answer.get("Errors")

    def _refusal(self, exc: ClientError, operation: str, control: Any) -> Answer:
        status, code = http_status(exc), error_code(exc)
        if code == "AccessDenied" or status == 403:
            raise _denied(operation, self.bucket) from None
        if status == 412 or code == "PreconditionFailed":
            return Answer.HONOURED
        if status == 404 or code == "NoSuchKey":
            return Answer.HONOURED if control() else Answer.INCONCLUSIVE
        if status == 501 or code in ("NotImplemented", "NotSupported"):
            return Answer.NOT_IMPLEMENTED
        if status is not None and 400 <= status < 500:
            return Answer.NOT_IMPLEMENTED  # the server rejects the form outright
        raise AbortError(
            f"cannot probe the server's conditional deletes: {describe(exc)}; nothing was changed"
        )


def probe(client: S3Client, bucket: str, folder: str, retry: RetryPolicy) -> ProbeResult:
    """Ask the server which conditional deletes it honours. Transient failures are retried by
    `retry`; a denial is a ConfigError, anything else an AbortError, both before any change."""
    prober = _Prober(client, bucket, folder, retry)
    return ProbeResult(
        delete_object_if_match=prober.delete_object(),
        delete_objects_etag=prober.delete_objects(),
        probed_at=time.time(),
    )
