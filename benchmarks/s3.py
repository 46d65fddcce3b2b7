"""The S3 side of a bench: where the server is, a client for it, filling and emptying a prefix."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeAlias

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from benchmarks.dataset import ObjectSpec

# botocore-stubs types no service methods, so a typed client would reject every call.
S3Client: TypeAlias = Any

LOCAL_CREDENTIALS = ("testing", "testing")
DEFAULT_REGION = "us-east-1"
_DELETE_BATCH = 1000


@dataclass(frozen=True)
class Target:
    """The server every contender talks to (directly, or through a proxy in front of it)."""

    endpoint_url: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    # Only for an https endpoint with a private CA; loopback http needs none.
    ca_bundle: str | None = None

    @property
    def https(self) -> bool:
        return self.endpoint_url.startswith("https:")

    def credential_env(self) -> dict[str, str]:
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        if self.https and self.ca_bundle:
            env["AWS_CA_BUNDLE"] = self.ca_bundle
        return env


def target_from_environment(endpoint_url: str, bucket: str, region: str | None) -> Target:
    """A target for a server we did not start: credentials come from the environment."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        raise SystemExit(
            "--endpoint-url needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment "
            "(every contender gets the same two)"
        )
    return Target(
        endpoint_url=endpoint_url.rstrip("/"),
        bucket=bucket,
        region=region or os.environ.get("AWS_REGION") or DEFAULT_REGION,
        access_key_id=key,
        secret_access_key=secret,
        session_token=os.environ.get("AWS_SESSION_TOKEN"),
        ca_bundle=os.environ.get("AWS_CA_BUNDLE"),
    )


def make_client(target: Target, url: str | None = None, pool: int = 16) -> S3Client:
    """A path-style client for ``url`` (default: the target itself) with the target's keys."""
    config = Config(
        s3={"addressing_style": "path"},
        max_pool_connections=pool,
        retries={"mode": "standard", "max_attempts": 5},
        # An empty dict stops HTTP_PROXY in the environment from rerouting loopback traffic.
        proxies={},
    )
    verify: str | bool | None = target.ca_bundle if target.https and target.ca_bundle else None
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=url or target.endpoint_url,
        region_name=target.region,
        aws_access_key_id=target.access_key_id,
        aws_secret_access_key=target.secret_access_key,
        aws_session_token=target.session_token,
        config=config,
        verify=verify,
    )


def ensure_bucket(client: S3Client, bucket: str) -> None:
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise


def remaining_keys(client: S3Client, bucket: str, prefix: str, limit: int = 5) -> list[str]:
    """Up to ``limit`` keys still under ``prefix``."""
    page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=limit)
    return [item["Key"] for item in page.get("Contents", [])]


def empty_prefix(client: S3Client, bucket: str, prefix: str) -> None:
    """Delete everything under ``prefix`` (a wrong contender's leftovers, before the next fill)."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def fill(client: S3Client, bucket: str, objects: Iterable[ObjectSpec], threads: int) -> None:
    """PUT every object, ``threads`` at a time; big bodies stream from their files."""

    def put(spec: ObjectSpec) -> None:
        with spec.open_body() as body:
            client.put_object(Bucket=bucket, Key=spec.key, Body=body)

    with ThreadPoolExecutor(threads, thread_name_prefix="bench-fill") as pool:
        # list() re-raises the first failure here rather than dropping it.
        list(pool.map(put, objects))
