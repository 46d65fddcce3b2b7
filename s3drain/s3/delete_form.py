"""Whether this run's DeleteObjects can be sent directly (`drain/direct_deletes.py`), learned
from botocore once per run as the GETs' target is (`direct_target.py`).

botocore's own DeleteObjects for a probe batch (keys that need every escape, one with an ETag
and one with a VersionId) is built, signed and answered here, unsent. Only when the body
`delete_xml.py` builds is byte for byte botocore's, its checksum headers have botocore's values,
every header botocore signed is one built here, and the signature is botocore's, do deletes
go direct. Anything else, and botocore keeps sending them.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from s3drain.checksums import crc32
from s3drain.s3.client import S3Client
from s3drain.s3.delete_xml import delete_body
from s3drain.s3.direct import Connection
from s3drain.s3.direct_target import dry_run
from s3drain.s3.sigv4 import Credentials

UNSIGNED = "UNSIGNED-PAYLOAD"
_PROBE: tuple[dict[str, str], ...] = (
    {
        "Key": "s3drain/direct probe &<>\"'\r\n\t+%2F ünï",
        "ETag": '"00000000000000000000000000000000"',
    },
    {"Key": "s3drain/direct probe/2", "VersionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"},
)
# Headers the signer adds itself: botocore signs them too.
_OWN = frozenset({"host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"})
# Headers of botocore's that say nothing to S3 about the request (or that the direct request
# sends its own way): any other it sends must be one the direct request sends too.
_BOTOCORES_OWN = frozenset(
    {"user-agent", "amz-sdk-invocation-id", "amz-sdk-request", "content-length", "authorization"}
)


def _crc32(body: bytes) -> str:
    return base64.b64encode(crc32(body, 0).to_bytes(4, "big")).decode()


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


# The checksum headers botocore may put on DeleteObjects, by version and settings.
_CHECKSUMS: dict[str, Callable[[bytes], str]] = {
    "x-amz-checksum-crc32": _crc32,
    "x-amz-sdk-checksum-algorithm": lambda _: "CRC32",
    "content-md5": _md5,
}


@dataclass(frozen=True)
class DeleteForm:
    """How botocore sends DeleteObjects here: its checksum headers, and whether it signs the
    body's hash or sends it unsigned."""

    checksums: tuple[str, ...]
    signs_payload: bool

    def headers(self, body: bytes) -> dict[str, str]:
        return {name: _CHECKSUMS[name](body) for name in self.checksums}

    def payload_hash(self, body: bytes) -> str:
        return hashlib.sha256(body).hexdigest() if self.signs_payload else UNSIGNED


def delete_form(
    client: S3Client, bucket: str, conn: Connection, credentials: Credentials
) -> DeleteForm | None:
    try:
        return _learn(client, bucket, conn, credentials)
    except Exception:  # whatever botocore's internals look like here: stay with botocore
        return None


def _learn(
    client: S3Client, bucket: str, conn: Connection, credentials: Credentials
) -> DeleteForm | None:
    seen = _dry_delete(client, bucket)
    if seen is None:
        return None
    url, headers, body = seen
    parts = urlsplit(url)
    if parts.path != (conn.endpoint.base_path or "/") or parts.query != "delete":
        return None
    if body != delete_body(_PROBE, quiet=False):
        return None
    signed = _signed_names(headers.get("authorization", ""))
    if signed is None or not signed - _OWN <= set(_CHECKSUMS):
        return None
    sent_hash = headers.get("x-amz-content-sha256", "")
    form = DeleteForm(tuple(sorted(signed - _OWN)), signs_payload=sent_hash != UNSIGNED)
    if form.payload_hash(body) != sent_hash:
        return None
    ours = form.headers(body)
    if any(headers.get(name) != value for name, value in ours.items()):
        return None
    if set(headers) - _BOTOCORES_OWN - _OWN - set(ours):
        return None  # a header the direct request would leave out, signed or not
    try:
        now = calendar.timegm(time.strptime(headers.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None
    mine = conn.sign_delete(credentials, ours, form.payload_hash(body), now)
    return form if mine["authorization"] == headers.get("authorization") else None


def _signed_names(authorization: str) -> set[str] | None:
    for part in authorization.partition(" ")[2].split(","):
        name, _, value = part.strip().partition("=")
        if name == "SignedHeaders":
            return set(value.split(";"))
    return None


def _dry_delete(
    client: S3Client, bucket: str, objects: Sequence[Mapping[str, str]] = _PROBE
) -> tuple[str, dict[str, str], bytes] | None:
    """botocore's DeleteObjects of `objects`, built and signed but answered here, unsent."""

    def call() -> None:
        client.delete_objects(
            Bucket=bucket,
            Delete={"Objects": list(objects), "Quiet": False},  # type: ignore[arg-type]
        )

    seen = dry_run(client, "DeleteObjects", call, b"<DeleteResult/>")
    return None if seen is None else (seen.url, seen.headers, seen.body)
