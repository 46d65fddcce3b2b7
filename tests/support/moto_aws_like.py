"""moto's S3 server, patched to honour the per-key ETag of DeleteObjects as AWS does.

moto 5.x honours ``If-Match`` on DeleteObject but ignores the ``ETag`` in a DeleteObjects
``<Object>`` and deletes regardless. AWS documents that ETag as a precondition on the current
version of the object: a mismatch leaves the object in place and reports it in the response's
``<Error>`` elements
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html,
https://docs.aws.amazon.com/AmazonS3/latest/API/API_ObjectIdentifier.html). No server available
here does that, so without this patch s3drain's batched exact delete could never run end to end.

What the patch emulates, per ``<Object>`` that carries an ``ETag``:

- the current version's ETag differs (quotes ignored, as moto's own If-Match does):
  ``<Error>`` with ``PreconditionFailed``, object kept;
- no current version (missing key, or a delete marker on top): ``<Error>`` with
  ``NoSuchKey``, nothing deleted and no delete marker written, as DeleteObject with
  If-Match answers 404 NoSuchKey for a missing key.

Objects without an ETag go through moto unchanged. Not emulated: ``*`` as the ETag, and
atomicity of check and delete against a concurrent PUT (moto has no such lock either).

Run ``python -m tests.support.moto_aws_like -H 127.0.0.1 -p PORT`` (moto.server's arguments).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any
from xml.etree import ElementTree

from moto import server
from moto.s3.models import S3Backend
from moto.s3.responses import S3Response

from tests.support import moto_etag_blind

_PRECONDITION_MESSAGE = "At least one of the pre-conditions you specified did not hold"
_NO_SUCH_KEY_MESSAGE = "The specified key does not exist."


def _requested_objects(body: str | bytes) -> list[dict[str, str | None]]:
    """The <Object> elements of a <Delete> body, as the dicts moto's own xmltodict parse makes."""
    root = ElementTree.fromstring(body)
    return [
        {field.tag.rpartition("}")[2]: field.text for field in obj}
        for obj in root.iterfind("{*}Object")
    ]


def _unquoted(etag: str) -> str:
    return etag.replace('"', "")


def _failed_precondition(
    response: Any, bucket: str, obj: dict[str, str | None]
) -> dict[str, str | None] | None:
    """The per-key error for ``obj``, or None when it may be deleted."""
    wanted = obj.get("ETag")
    if wanted is None:
        return None
    # get_object returns the current version and None for a delete marker, which is what AWS
    # evaluates the condition against ("only the current version of the object").
    current = response.backend.get_object(bucket, obj["Key"])
    if current is None:
        code, message = "NoSuchKey", _NO_SUCH_KEY_MESSAGE
    elif _unquoted(wanted) != _unquoted(current.etag):
        code, message = "PreconditionFailed", _PRECONDITION_MESSAGE
    else:
        return None
    error: dict[str, str | None] = {"Key": obj["Key"], "Code": code, "Message": message}
    if "VersionId" in obj:
        error["VersionId"] = obj["VersionId"]
    return error


# The (Key, VersionId, ETag) of the objects this request must not delete. A context variable,
# because moto's server runs each request in a thread of its own.
_refused: ContextVar[frozenset[tuple[str, str | None, str | None]]] = ContextVar(
    "refused", default=frozenset()
)


def _identity(obj: dict[str, Any]) -> tuple[str, str | None, str | None]:
    return obj["Key"] or "", obj.get("VersionId"), obj.get("ETag")


def _honour_etags(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap S3Response._bucket_response_delete_keys: check the ETags, report the failures."""

    @functools.wraps(original)
    def delete_keys(self: Any, bucket_name: str, authenticated: bool = True) -> Any:
        errors, refused = [], set()
        for obj in _requested_objects(self.body):
            if (error := _failed_precondition(self, bucket_name, obj)) is not None:
                errors.append(error)
                refused.add(_identity(obj))
        if not errors:
            return original(self, bucket_name, authenticated)
        # Our errors join moto's own just before its answer is serialised. The response
        # object lives for this one request, so shadowing its method touches no other.
        serialise = self.serialized

        def serialized(result: Any) -> Any:
            result.result["Errors"] = [*result.result.get("Errors", []), *errors]
            return serialise(result)

        self.serialized = serialized
        token = _refused.set(frozenset(refused))
        try:
            return original(self, bucket_name, authenticated)
        finally:
            _refused.reset(token)

    return delete_keys


def _skip_refused(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap S3Backend.delete_objects: leave out the objects whose precondition failed."""

    @functools.wraps(original)
    def delete_objects(
        self: Any, bucket_name: str, objects: list[Any], *args: Any, **kwargs: Any
    ) -> Any:
        refused = _refused.get()
        allowed = [obj for obj in objects if _identity(obj) not in refused]
        return original(self, bucket_name, allowed, *args, **kwargs)

    return delete_objects


_patched = False


def patch() -> None:
    """Make moto's DeleteObjects honour per-key ETags (idempotent)."""
    global _patched  # noqa: PLW0603
    if _patched:
        return
    _patched = True
    moto_etag_blind.install()  # this module's check alone decides, whatever moto's version
    respond = S3Response._bucket_response_delete_keys
    S3Response._bucket_response_delete_keys = _honour_etags(respond)  # type: ignore[method-assign]
    S3Backend.delete_objects = _skip_refused(S3Backend.delete_objects)  # type: ignore[method-assign]


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """The same patch for in-process (mock_aws) tests, undone afterwards (all but moto's own
    check of the ETag, which stays off: see `moto_etag_blind`)."""
    moto_etag_blind.install()
    respond, delete = S3Response._bucket_response_delete_keys, S3Backend.delete_objects
    S3Response._bucket_response_delete_keys = _honour_etags(respond)  # type: ignore[method-assign]
    S3Backend.delete_objects = _skip_refused(delete)  # type: ignore[method-assign]
    try:
        yield
    finally:
        S3Response._bucket_response_delete_keys = respond  # type: ignore[method-assign]
        S3Backend.delete_objects = delete  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    patch()
    server.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
