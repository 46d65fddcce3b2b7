"""AWS Signature Version 4 for the requests s3drain sends itself (`direct.py`): the same
Authorization header botocore's `S3SigV4Auth` computes, for a GET with no body.

botocore's signer walks its event system, copies the request and normalises every header on
every call; for a 4 KiB object that cost more CPU than the transfer. This is only the
arithmetic: a canonical request, a string to sign, and one HMAC with a signing key derived once
a day. `tests/test_sigv4.py` holds it to botocore's own output, header for header.

Imports only the standard library: it runs in the fetch processes, which must start quickly.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def amz_date(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))


def quote_key(key: str) -> str:
    """A key as botocore puts it into a URL path (`{Key+}`: every byte but `/` and `~` and the
    unreserved characters percent-encoded, so `a//b` and `../x` reach S3 as written)."""
    return quote(key, safe="/~")


def quote_query(value: str) -> str:
    return quote(value, safe="-_.~")


class Signer:
    """Signs requests for one region and service; thread-safe (the key cache is replaced, never
    mutated in place)."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self.region = region
        self.service = service
        self._key: tuple[str, str, bytes] = ("", "", b"")  # (secret, date, signing key)

    def _signing_key(self, secret: str, date: str) -> bytes:
        cached_secret, cached_date, key = self._key
        if cached_secret == secret and cached_date == date:
            return key
        key = _hmac(("AWS4" + secret).encode(), date)
        for part in (self.region, self.service, "aws4_request"):
            key = _hmac(key, part)
        self._key = (secret, date, key)
        return key

    def sign(
        self,
        credentials: Credentials,
        method: str,
        host: str,
        path: str,
        *,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        now: float | None = None,
        payload_hash: str = EMPTY_SHA256,
    ) -> dict[str, str]:
        """The headers to send: `headers` (lower-case names) plus host, date, payload hash,
        session token and Authorization. `path` and `query` are already URL-encoded, as sent;
        `payload_hash` is the body's SHA-256 (hex), an empty body's by default."""
        stamp = amz_date(now)
        signed = dict(headers or {})
        signed["host"] = host
        signed["x-amz-date"] = stamp
        signed["x-amz-content-sha256"] = payload_hash
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        names = sorted(signed)
        canonical_headers = "".join(f"{n}:{' '.join(signed[n].split())}\n" for n in names)
        signed_names = ";".join(names)
        canonical = "\n".join(
            (method, path, _canonical_query(query), canonical_headers, signed_names, payload_hash)
        )
        date = stamp[:8]
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            (ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        # hmac.digest: OpenSSL's one-shot HMAC, without hmac.HMAC's Python objects per call.
        signature = hmac.digest(
            self._signing_key(credentials.secret_key, date), to_sign.encode(), "sha256"
        ).hex()
        signed["authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return signed


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.digest(key, text.encode(), "sha256")


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = sorted(tuple(pair.partition("=")[::2]) for pair in query.split("&"))
    return "&".join(f"{k}={v}" for k, v in pairs)
