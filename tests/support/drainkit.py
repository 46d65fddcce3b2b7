"""Building blocks for drain tests: settings, bucket contents, local trees, audit lines, and
botocore-level fault injection for in-process (mock_aws) runs."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from moto import mock_aws

from s3drain.config.s3 import S3Settings
from s3drain.drain.fanout import StreamPolicy
from s3drain.drain.run import DrainResult, run_drain
from s3drain.drain.settings import DrainSettings
from s3drain.drain.summary import render_summary
from s3drain.local.fs import LocalFS
from s3drain.s3.client import S3Client, make_client
from tests.support import moto_etag_blind

BUCKET = "lake"
PREFIX = "exports/2024/"


def drain_settings(base: Path, **overrides: Any) -> DrainSettings:
    s3_overrides = {
        k: overrides.pop(k) for k in list(overrides) if k in S3Settings.__dataclass_fields__
    }
    s3 = S3Settings(
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        max_attempts=4,
        **s3_overrides,
    )
    settings = DrainSettings(
        s3=s3,
        bucket=BUCKET,
        prefix=PREFIX,
        local_base_path=base,
        raw_dir=base / "raw",
        processed_dir=base / "processed",
        state_dir=base / ".s3drain",
        audit_log=base / ".s3drain" / "audit.jsonl",
        workers=4,
        delete_flush_seconds=0.2,
    )
    return replace(settings, **overrides)


@dataclass
class RunOutput:
    result: DrainResult
    out: str
    err: str

    @property
    def summary(self) -> str:
        """What the CLI prints at the end of the run."""
        return render_summary(self.result.totals, self.result.info)

    @property
    def code(self) -> int:
        return int(self.result.exit_code)

    def count(self, status: str) -> int:
        return int(self.result.totals.counts.get(status, 0))


def drain(
    settings: DrainSettings,
    client: S3Client,
    fs: LocalFS | None = None,
    stop: threading.Event | None = None,
    streams: StreamPolicy | None = None,
) -> RunOutput:
    out, err = io.StringIO(), io.StringIO()
    result = run_drain(
        settings,
        out=out,
        err=err,
        client=client,
        fs=fs,
        sleep=lambda _: None,
        stop=stop,
        streams=streams,
    )
    return RunOutput(result, out.getvalue(), err.getvalue())


def place_copy(path: Path, data: bytes) -> None:
    """A local copy made after the upload, as an ETL's copy into processed/ would be: its
    mtime is set a minute ahead, since s3drain trusts an xattr-less copy only when it was
    written after the object (S3's LastModified has whole seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    later = time.time() + 60
    os.utime(path, (later, later))


def put_objects(client: S3Client, objects: Mapping[str, bytes], bucket: str = BUCKET) -> None:
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


def bucket_keys(client: S3Client, bucket: str = BUCKET) -> set[str]:
    keys: set[str] = set()
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if token:
            kwargs["ContinuationToken"] = token
        page = client.list_objects_v2(**kwargs)
        keys.update(obj["Key"] for obj in page.get("Contents", []))
        token = page.get("NextContinuationToken")
        if not token:
            return keys


def local_tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes), hidden temp files included."""
    found: dict[str, bytes] = {}
    if not root.exists():
        return found
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def audit_lines(settings: DrainSettings) -> list[dict[str, Any]]:
    if not settings.audit_log.exists():
        return []
    return [json.loads(line) for line in settings.audit_log.read_text().splitlines()]


def ledger_rows(settings: DrainSettings, where: str = "1 = 1") -> list[dict[str, Any]]:
    """Rows of the run's ledger, read straight from SQLite (not through s3drain's code)."""
    path = settings.state_dir / "state.db"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"SELECT * FROM deliveries WHERE {where}")  # noqa: S608
        return [dict(row) for row in rows]


def unaudited_keys(settings: DrainSettings) -> set[str]:
    return {row["key"] for row in ledger_rows(settings, "audited = 0")}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- fault injection at the botocore level (in-process runs) ----------------------------------
#
# Hooked on `before-call`, like botocore's Stubber: an answer returned there replaces the whole
# request, so moto never sees it. (`before-send` would not do: botocore calls every handler of
# that event, moto's included, so the request would still run.)


class RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@dataclass(frozen=True)
class Call:
    """What a rule sees of one API call: its operation, path (with the key) and headers."""

    operation: str
    url: str
    headers: Mapping[str, str]
    params: Mapping[str, Any]


Answer = tuple[AWSResponse, dict[str, Any]]


def is_probe(call: Call) -> bool:
    """A request of s3drain's probe of conditional deletes (on a random missing key)."""
    body = call.params.get("body", b"")
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    return ".s3drain-probe-" in call.url or ".s3drain-probe-" in text


def header(call: Call, name: str) -> str:
    value = call.headers.get(name, "")
    return value.decode() if isinstance(value, bytes) else str(value)


def error_response(status: int, code: str, message: str = "injected") -> Answer:
    http = AWSResponse("http://injected", status, HTTPHeaders(), RawBody(b""))
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return http, parsed


def ok_response(parsed: dict[str, Any]) -> Answer:
    http = AWSResponse("http://injected", 200, HTTPHeaders(), RawBody(b""))
    return http, {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200}}


Rule = Callable[[str, Call], Answer | BaseException | None]


@dataclass
class Injector:
    """Answers some calls itself: `rule(operation, call) -> Answer | Exception | None`
    (None lets the call through to moto). Counts what it saw, by operation."""

    rule: Rule
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> Answer | None:
        operation = model.name
        with self.lock:
            self.seen[operation] = self.seen.get(operation, 0) + 1
        call = Call(operation, str(params.get("url_path", "")), params.get("headers", {}), params)
        # Outside the lock: a rule may itself call S3 through this client.
        answer = self.rule(operation, call)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def inject(client: S3Client, rule: Rule) -> Injector:
    injector = Injector(rule)
    # botocore's stubs type handlers as returning None; a before-call handler may answer.
    handler: Any = injector
    client.meta.events.register_first("before-call.s3", handler)
    return injector


def new_client() -> S3Client:
    client = make_client(
        S3Settings(region="us-east-1", access_key_id="testing", secret_access_key="testing")
    )
    client.create_bucket(Bucket=BUCKET)
    return client


# Its mock_aws is the server that ignores DeleteObjects' per-key ETag, also where no conftest
# ran (`make chaos`'s seam trials).
moto_etag_blind.install()

__all__ = ["mock_aws"]
