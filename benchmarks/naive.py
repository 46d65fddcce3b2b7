"""The shape of the original script: one thread, one object at a time, botocore.

For every page of the listing, for every object: GET the whole body into memory, write it to
the destination, DELETE the object. No verification, no fsync, no batching, no concurrency:
the baseline the other contenders are measured against.

    python benchmarks/naive.py --bucket B --prefix P --dest DIR [--endpoint-url URL]

Credentials and region come from botocore's usual chain (the bench sets them in the
environment).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import botocore.session
from botocore.config import Config


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Drain a prefix the naive way.")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--dest", required=True, help="local folder for the objects")
    parser.add_argument("--endpoint-url", default=None)
    parser.add_argument("--region", default=None)
    return parser.parse_args(argv)


def _client(endpoint_url: str | None, region: str | None) -> Any:
    config = Config(s3={"addressing_style": "path"})
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint_url, region_name=region, config=config
    )


def drain(client: Any, bucket: str, prefix: str, dest: str) -> int:
    """Move every object under ``prefix`` to ``dest``; return how many."""
    moved = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue  # a folder marker
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            path = os.path.join(dest, key[len(prefix) :])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as file:
                file.write(body)
            client.delete_object(Bucket=bucket, Key=key)
            moved += 1
    return moved


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    drain(_client(args.endpoint_url, args.region), args.bucket, args.prefix, args.dest)


if __name__ == "__main__":
    main()
