"""What direct GETs (`direct.py`) need to know, learned from botocore once per run.

botocore resolves the endpoint (region, addressing style, FIPS, dual-stack, a bucket's region
learned from a redirect), the credentials and TLS. Rather than repeat those rules, one GetObject
is built and signed by botocore as usual and stopped before it is sent: its URL gives the
scheme, host and path layout, its Authorization header the signing region and service. The
same request is then signed by `sigv4.py` with the same inputs; only when both signatures are
equal does the run use direct GETs. Where botocore would do something a direct GET does not (a
proxy, a client certificate, another signing scheme or service, no credentials), or anything
here is not as expected, the answer is None and every GET stays with botocore.
"""

from __future__ import annotations

import calendar
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.httpsession import get_cert_path

from s3drain.config.s3 import S3Settings
from s3drain.s3.client import UNSENT, S3Client
from s3drain.s3.direct import Endpoint
from s3drain.s3.sigv4 import Credentials, Signer, quote_key

_PROBE_KEY = "s3drain/direct probe+%key"
_PROBE_ETAG = '"00000000000000000000000000000000"'
_HOOK = "s3drain-direct-target"


@dataclass(frozen=True)
class DirectTarget:
    endpoint: Endpoint
    credentials: Callable[[], Credentials]
    url: str  # botocore's endpoint URL, for error messages


def direct_target(client: S3Client, bucket: str, settings: S3Settings) -> DirectTarget | None:
    try:
        return _learn(client, bucket, settings)
    except Exception:  # whatever botocore's internals look like here: stay with botocore
        return None


def _learn(client: S3Client, bucket: str, settings: S3Settings) -> DirectTarget | None:
    http = getattr(getattr(client, "_endpoint", None), "http_session", None)
    signer = getattr(client, "_request_signer", None)
    botocore_credentials = getattr(signer, "_credentials", None)
    if http is None or botocore_credentials is None:
        return None
    if getattr(http, "_client_cert", None):
        return None
    seen = _dry_get(client, bucket)
    if seen is None:
        return None
    url, headers = seen
    if http._proxy_config.proxy_url_for(url):
        return None
    parts = urlsplit(url)
    suffix = "/" + quote_key(_PROBE_KEY)
    if parts.query or not parts.path.endswith(suffix) or parts.hostname is None:
        return None
    scope = _scope(headers.get("authorization", ""))
    if scope is None or scope[2] != "s3" or scope[3] != "aws4_request":
        return None
    region = scope[1]
    verify = http._verify
    endpoint = Endpoint(
        scheme=parts.scheme,
        host=parts.hostname,
        port=parts.port or (443 if parts.scheme == "https" else 80),
        # The CRT signer puts Host in the request's headers; botocore's own signer signs the
        # one urllib3 will send. Either way the signature check below must agree.
        host_header=headers.get("host") or _host_header(parts.scheme, parts.hostname, parts.port),
        base_path=parts.path[: -len(suffix)],
        region=region,
        ca_file=get_cert_path(verify) if verify is not False else None,
        verify=verify is not False,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )

    def credentials() -> Credentials:
        frozen = botocore_credentials.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    if not _same_signature(endpoint, credentials(), parts.path, headers):
        return None
    return DirectTarget(endpoint, credentials, client.meta.endpoint_url)


def _dry_get(client: S3Client, bucket: str) -> tuple[str, dict[str, str]] | None:
    """botocore's GetObject for a probe key, built and signed but answered here, unsent."""

    def call() -> None:
        client.get_object(
            Bucket=bucket, Key=_PROBE_KEY, IfMatch=_PROBE_ETAG, ChecksumMode="ENABLED"
        )["Body"].close()

    seen = dry_run(client, "GetObject", call, b"")
    return None if seen is None else (seen.url, seen.headers)


@dataclass(frozen=True)
class Unsent:
    """A request botocore built and signed, as it would have left."""

    url: str
    headers: dict[str, str]  # lower-case names
    body: bytes


def dry_run(
    client: S3Client, operation: str, call: Callable[[], object], answer: bytes
) -> Unsent | None:
    """What `call` (one request of `operation` by `client`) would send: caught just before it
    leaves and answered 200 with `answer`; the request counter does not count it."""
    seen: list[Unsent] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        request.context[UNSENT] = True
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else str(v)
            for k, v in request.headers.items()
        }
        body = request.body
        sent = body if isinstance(body, bytes) else body.read() if body else b""
        seen.append(Unsent(str(request.url), headers, sent))
        return AWSResponse(request.url, 200, HTTPHeaders(), _Body(answer))

    event = f"before-send.s3.{operation}"
    events = client.meta.events
    hook: Callable[..., Any] = capture
    events.register_first(event, hook, unique_id=_HOOK)
    try:
        call()
    finally:
        events.unregister(event, unique_id=_HOOK)
    return seen[0] if seen else None


def _host_header(scheme: str, host: str, port: int | None) -> str:
    """The Host header of a request to this URL: the default port left out."""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        return f"{host}:{port}"
    return host


class _Body(io.BytesIO):
    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self.getvalue()


def _scope(authorization: str) -> list[str] | None:
    """`Credential=AK/20261204/eu-west-1/s3/aws4_request` -> [date, region, service, ...]."""
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        return None
    for part in authorization[len("AWS4-HMAC-SHA256 ") :].split(","):
        name, _, value = part.strip().partition("=")
        if name == "Credential":
            return value.split("/")[1:]
    return None


def _same_signature(
    endpoint: Endpoint, credentials: Credentials, path: str, botocore_headers: dict[str, str]
) -> bool:
    stamp = botocore_headers.get("x-amz-date", "")
    try:
        now = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return False
    ours = Signer(endpoint.region).sign(
        credentials,
        "GET",
        endpoint.host_header,
        path,
        headers={"if-match": _PROBE_ETAG, "x-amz-checksum-mode": "ENABLED"},
        now=now,
    )
    return ours["authorization"] == botocore_headers.get("authorization")
