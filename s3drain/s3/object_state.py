"""Is the object a delete named still in S3? Asked when a delete's answer never came: after a
killed run (`drain/recovery.py`) and when every attempt at a delete failed in a way that may
have reached S3 (`drain/delete_requests.py`). Only S3 can say, so it is asked with the ETag
(and version) the delete named."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from s3drain.errors import http_status
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy

State = Literal["deleted", "changed", "there"]

_GONE = (404, 405)  # 405: the key's current version is a delete marker


def object_state(
    client: S3Client,
    bucket: str,
    retry: RetryPolicy,
    *,
    key: str,
    etag: str,
    version_id: str | None,
) -> State | None:
    """`deleted` (that object is gone), `changed` (another version holds the key; with a
    version id: that version is still in the bucket), `there` (unchanged, not deleted), or
    None (no answer to trust: ask again later)."""
    if retry.stopped():
        return None  # S3 is gone (the breaker): one attempt per object would only wait
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "IfMatch": f'"{etag}"'}
    try:
        answer = retry.run(f"HeadObject {key}", partial(client.head_object, **params))
    except ClientError as exc:
        status = http_status(exc)
        if status in _GONE:
            return "deleted"
        if status != 412:
            return None
    except BotoCoreError:
        return None
    else:
        # A server that ignores If-Match on HEAD answers for whatever is at the key.
        if str(answer.get("ETag") or "").strip('"') in ("", etag):
            return "there"
    if version_id is None:
        return "changed"
    # Another version is current: was ours deleted by its VersionId, or overwritten?
    try:
        retry.run(
            f"HeadObject {key} version {version_id}",
            partial(client.head_object, Bucket=bucket, Key=key, VersionId=version_id),
        )
    except ClientError as exc:
        return "deleted" if http_status(exc) in (*_GONE, 400) else None
    except BotoCoreError:
        return None
    return "changed"
