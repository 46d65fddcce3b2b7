"""The bucket an ingest writes to: created when missing, refused when it is someone else's."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import ConfigError, S3DrainError, error_code, http_status
from s3drain.s3.client import S3Client
from s3drain.s3.preflight import explain
from s3drain.s3.retry import RetryPolicy


def ensure_bucket(client: S3Client, retry: RetryPolicy, bucket: str, endpoint: str | None) -> bool:
    """Make sure the bucket is there and ours; True when this call created it."""
    try:
        retry.run("HeadBucket", lambda: client.head_bucket(Bucket=bucket))
    except (ClientError, BotoCoreError) as exc:
        status = http_status(exc)
        if status == 403:
            raise _forbidden(client, bucket, endpoint) from None
        if status == 301:
            raise ConfigError(
                f"bucket {bucket!r} is in another region: set --region / AWS_REGION"
            ) from None
        if status != 404:
            raise explain(exc, bucket=bucket, operation="HeadBucket", endpoint=endpoint) from None
    else:
        return False
    region = client.meta.region_name
    params: dict[str, Any] = {"Bucket": bucket}
    # us-east-1 is the one region S3 refuses to be named in a LocationConstraint.
    if region and region not in ("us-east-1", "aws-global"):
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        retry.run("CreateBucket", lambda: client.create_bucket(**params))
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc)
        if code == "BucketAlreadyOwnedByYou":
            return False  # another run created it a moment ago
        if code == "BucketAlreadyExists":
            raise _not_ours(bucket, "BucketAlreadyExists on CreateBucket") from None
        raise explain(exc, bucket=bucket, operation="CreateBucket", endpoint=endpoint) from None
    return True


def _forbidden(client: S3Client, bucket: str, endpoint: str | None) -> S3DrainError:
    """HeadBucket's 403 has no body: one listing request tells a wrong key from a bucket that
    is not ours, so a typo in the secret is not reported as someone else's bucket."""
    try:
        client.list_objects_v2(Bucket=bucket, MaxKeys=0)
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in _CREDENTIAL_ERRORS:
            return explain(exc, bucket=bucket, operation="ListObjectsV2", endpoint=endpoint)
    return _not_ours(bucket, "403 on HeadBucket")


_CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "TokenRefreshRequired",
    }
)


def _not_ours(bucket: str, seen: str) -> ConfigError:
    return ConfigError(
        f"bucket {bucket!r} exists but belongs to another account, or these credentials lack "
        f"access to it ({seen}); nothing was uploaded",
        hint="bucket names are global: choose another --bucket, or get s3:ListBucket and "
        "s3:PutObject on it",
    )
