"""Checks made before anything changes, and S3's refusals turned into one line a user can act on.

A missing bucket, unknown or rejected credentials, a wrong region, an unreachable endpoint or a
missing permission end the run here with exit code 2 and nothing downloaded or deleted.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from s3drain.errors import AbortError, ConfigError, S3DrainError, describe, error_code, http_status
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy


def explain(
    exc: BaseException, *, bucket: str, operation: str, endpoint: str | None
) -> S3DrainError:
    """S3's answer as a ConfigError when the user can fix it, else an AbortError."""
    code = error_code(exc) or ""
    where = f"at {endpoint}" if endpoint else "on AWS"
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ConfigError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in "
            "config/.env, or pass --profile, or run where an instance role is available"
        )
    if isinstance(exc, EndpointConnectionError):
        return ConfigError(
            f"cannot reach S3 {where}: {exc}; check --endpoint-url / S3_ENDPOINT_URL and the "
            "network"
        )
    if code in ("NoSuchBucket",) or (http_status(exc) == 404 and operation != "GetObject"):
        return ConfigError(
            f"bucket {bucket!r} does not exist {where}: check --bucket / BUCKET_NAME"
            + (" and --endpoint-url" if endpoint else " and --region")
        )
    if code == "InvalidAccessKeyId":
        return ConfigError(
            "S3 does not know this access key ID: check AWS_ACCESS_KEY_ID or --profile"
        )
    if code == "SignatureDoesNotMatch":
        return ConfigError(
            "S3 rejected the secret access key (SignatureDoesNotMatch): check AWS_SECRET_ACCESS_KEY"
        )
    if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired", "ExpiredTokenException"):
        return ConfigError(
            "the session token is expired or invalid: refresh the credentials (AWS_SESSION_TOKEN, "
            "aws sso login)"
        )
    if code in (
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    ):
        return ConfigError(
            f"bucket {bucket!r} is in another region: set --region / AWS_REGION ({describe(exc)})"
        )
    if code == "AccessDenied" or http_status(exc) == 403:
        need = {"ListObjectsV2": "s3:ListBucket", "ListObjectVersions": "s3:ListBucketVersions"}
        return ConfigError(
            f"S3 denied {operation} on bucket {bucket!r} (AccessDenied): the credentials need "
            f"{need.get(operation, 's3:' + operation)} on it"
        )
    return AbortError(f"{operation} on bucket {bucket!r} failed: {describe(exc)}")


def bucket_is_versioned(
    client: S3Client, bucket: str, retry: RetryPolicy, endpoint: str | None
) -> tuple[bool, str | None]:
    """(versioned?, a warning to show). One request: it also proves the bucket exists and the
    credentials work before anything changes."""
    try:
        answer = retry.run(
            "GetBucketVersioning", lambda: client.get_bucket_versioning(Bucket=bucket)
        )
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) == "AccessDenied":
            # Allowed to drain but not to read the bucket's settings: conditional deletes do not
            # need to know (in a versioned bucket they leave a delete marker either way).
            return False, (
                "cannot read the bucket's versioning (AccessDenied on GetBucketVersioning); "
                "treating it as unversioned"
            )
        raise explain(
            exc, bucket=bucket, operation="GetBucketVersioning", endpoint=endpoint
        ) from None
    # Only "Enabled" gives every upload a version of its own. With versioning Suspended each
    # upload replaces the `null` version under the same id, so a delete by VersionId=null could
    # remove an upload made after the verified one: such a bucket counts as unversioned.
    return answer.get("Status") == "Enabled", None
