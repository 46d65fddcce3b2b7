"""The bench's in-memory endpoint's buckets and objects, and the S3 operations on them
(see benchmarks/memserver.py for what it does and does not do)."""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from benchmarks.memwire import byte_range, key_text, page, payload, same_etag
from tests.support.proxy import s3_operation

COUNTS_PATH = "/_bench/counts"
_MAX_KEYS = 1000
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


@dataclass(frozen=True, slots=True)
class StoredObject:
    body: bytes
    etag: str  # quoted, as S3 answers it
    modified: float
    checksum: tuple[str, str] | None = None  # (algorithm, base64 value), full object

    @property
    def http_date(self) -> str:
        return formatdate(self.modified, usegmt=True)

    @property
    def iso_date(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.modified))


@dataclass
class Bucket:
    name: str
    objects: dict[str, StoredObject] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # sorted, for listings
    uploads: dict[str, dict[int, bytes]] = field(default_factory=dict)

    def put(self, key: str, item: StoredObject) -> None:
        if key not in self.objects:
            bisect.insort(self.keys, key)
        self.objects[key] = item

    def remove(self, key: str) -> None:
        if self.objects.pop(key, None) is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | memoryview = b""


def _xml(root: str, inner: str) -> bytes:
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    return f'{head}<{root} xmlns="{_XMLNS}">{inner}</{root}>'.encode()


def error(status: int, code: str, message: str, key: str = "") -> Response:
    inner = f"<Code>{code}</Code><Message>{escape(message)}</Message>"
    if key:
        inner += f"<Key>{escape(key)}</Key>"
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{inner}</Error>'.encode()
    return Response(status, (("Content-Type", "application/xml"),), body)


class Store:
    """Buckets and objects, and the S3 operations on them."""

    def __init__(self) -> None:
        self.buckets: dict[str, Bucket] = {}
        self.counts: Counter[str] = Counter()

    def handle(self, request: Request) -> Response:
        if request.path == COUNTS_PATH:
            return Response(200, (("Content-Type", "application/json"),), self._counts_json())
        bucket_name, _, key = request.path[1:].partition("/")
        key = unquote(key)
        params = {name: values[0] for name, values in request.query.items()}
        self.counts[s3_operation(request.method, bucket_name, key, params, request.headers)] += 1
        if not bucket_name:
            names = "".join(
                f"<Bucket><Name>{escape(n)}</Name><CreationDate>2026-01-01T00:00:00.000Z"
                "</CreationDate></Bucket>"
                for n in sorted(self.buckets)
            )
            return self._ok_xml("ListAllMyBucketsResult", f"<Buckets>{names}</Buckets>")
        if not key:
            return self._bucket_operation(request, bucket_name)
        bucket = self.buckets.get(bucket_name)
        if bucket is None:
            return error(404, "NoSuchBucket", "The specified bucket does not exist")
        return self._object_operation(request, bucket, key)

    def _counts_json(self) -> bytes:
        return json.dumps(dict(self.counts)).encode()

    @staticmethod
    def _ok_xml(root: str, inner: str) -> Response:
        return Response(200, (("Content-Type", "application/xml"),), _xml(root, inner))

    # --- buckets ---------------------------------------------------------------------------

    def _bucket_operation(self, request: Request, name: str) -> Response:
        method, query = request.method, request.query
        bucket = self.buckets.get(name)
        if method == "PUT" and not query:
            if bucket is not None:
                return error(409, "BucketAlreadyOwnedByYou", "You already own this bucket")
            self.buckets[name] = Bucket(name)
            return Response(200, (("Location", f"/{name}"),))
        if bucket is None:
            return error(404, "NoSuchBucket", "The specified bucket does not exist")
        if method == "HEAD":
            return Response(200, (("x-amz-bucket-region", "us-east-1"),))
        if method == "DELETE" and not query:
            if bucket.objects:
                return error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty")
            del self.buckets[name]
            return Response(204)
        if method == "POST" and "delete" in query:
            return self._delete_objects(bucket, request.body)
        if method == "GET":
            return self._bucket_read(bucket, query)
        return error(501, "NotImplemented", f"{method} with {sorted(query)} is not implemented")

    def _bucket_read(self, bucket: Bucket, query: dict[str, list[str]]) -> Response:
        if "location" in query:
            return Response(200, (), _xml("LocationConstraint", ""))
        if "versioning" in query:
            return self._ok_xml("VersioningConfiguration", "")
        if not (set(query) - _LIST_PARAMETERS):
            return self._list(bucket, query)
        return error(501, "NotImplemented", f"GET with {sorted(query)} is not implemented")

    def _list(self, bucket: Bucket, query: dict[str, list[str]]) -> Response:
        def one(name: str, default: str = "") -> str:
            return query.get(name, [default])[0]

        v2 = one("list-type") == "2"
        prefix, delimiter = one("prefix"), one("delimiter")
        url = one("encoding-type") == "url"
        try:
            max_keys = max(0, min(_MAX_KEYS, int(one("max-keys", str(_MAX_KEYS)))))
        except ValueError:
            return error(400, "InvalidArgument", "max-keys is not a number")
        if v2:
            token = one("continuation-token")
            after = base64.urlsafe_b64decode(token).decode() if token else one("start-after")
        else:
            after = one("marker")
        found = page(bucket.keys, prefix, delimiter, after, max_keys)
        contents = [
            f"<Contents><Key>{key_text(key, url)}</Key>"
            f"<LastModified>{item.iso_date}</LastModified><ETag>{escape(item.etag)}</ETag>"
            f"<Size>{len(item.body)}</Size><StorageClass>STANDARD</StorageClass></Contents>"
            for key in found.keys
            for item in (bucket.objects[key],)
        ]
        prefixes, last, truncated = found.prefixes, found.last, found.truncated
        parts = [
            f"<Name>{escape(bucket.name)}</Name><Prefix>{key_text(prefix, url)}</Prefix>",
            f"<MaxKeys>{max_keys}</MaxKeys><IsTruncated>{str(truncated).lower()}</IsTruncated>",
        ]
        if delimiter:
            parts.append(f"<Delimiter>{key_text(delimiter, url)}</Delimiter>")
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        if v2:
            parts.append(f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>")
            if truncated:
                token = base64.urlsafe_b64encode(last.encode()).decode()
                parts.append(f"<NextContinuationToken>{token}</NextContinuationToken>")
        else:
            parts.append(f"<Marker>{key_text(one('marker'), url)}</Marker>")
            if truncated and delimiter:
                parts.append(f"<NextMarker>{key_text(last, url)}</NextMarker>")
        parts += contents
        parts += [
            f"<CommonPrefixes><Prefix>{key_text(p, url)}</Prefix></CommonPrefixes>"
            for p in prefixes
        ]
        return self._ok_xml("ListBucketResult", "".join(parts))

    def _delete_objects(self, bucket: Bucket, body: bytes) -> Response:
        try:
            # A loopback bench server parses what the bench's own contenders send.
            root = ElementTree.fromstring(body)  # noqa: S314
        except ElementTree.ParseError:
            return error(400, "MalformedXML", "The XML you provided was not well-formed")
        namespace = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        quiet = (root.findtext(f"{namespace}Quiet") or "").lower() == "true"
        done: list[str] = []
        for entry in root.iter(f"{namespace}Object"):
            key = entry.findtext(f"{namespace}Key") or ""
            etag = entry.findtext(f"{namespace}ETag")
            item = bucket.objects.get(key)
            if etag is not None and item is None:
                done.append(_delete_error(key, "NoSuchKey", "The specified key does not exist."))
            elif etag is not None and item is not None and not same_etag(etag, item.etag):
                done.append(
                    _delete_error(
                        key,
                        "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold",
                    )
                )
            else:
                bucket.remove(key)
                if not quiet:
                    done.append(f"<Deleted><Key>{escape(key)}</Key></Deleted>")
        return self._ok_xml("DeleteResult", "".join(done))

    # --- objects ---------------------------------------------------------------------------

    def _object_operation(self, request: Request, bucket: Bucket, key: str) -> Response:
        method, query = request.method, request.query
        if "uploadId" in query:
            return self._multipart(request, bucket, key, query["uploadId"][0])
        if method == "POST" and "uploads" in query:
            upload = uuid.uuid4().hex
            bucket.uploads[upload] = {}
            inner = f"{_names(bucket, key)}<UploadId>{upload}</UploadId>"
            return self._ok_xml("InitiateMultipartUploadResult", inner)
        if any(
            name not in _OBJECT_PARAMETERS and not name.lower().startswith("x-amz-")
            for name in query
        ):
            return error(501, "NotImplemented", f"{method} with {sorted(query)} is not implemented")
        if method in ("GET", "HEAD"):
            return self._get(request, bucket, key)
        if method == "PUT":
            if "x-amz-copy-source" in request.headers:
                return error(501, "NotImplemented", "CopyObject is not implemented")
            data, checksum = payload(request.headers, request.body)
            etag = f'"{hashlib.md5(data).hexdigest()}"'
            bucket.put(key, StoredObject(data, etag, time.time(), checksum))
            return Response(200, (("ETag", etag),))
        if method == "DELETE":
            return self._delete(request, bucket, key)
        return error(501, "NotImplemented", f"{method} on an object is not implemented")

    def _get(self, request: Request, bucket: Bucket, key: str) -> Response:
        item = bucket.objects.get(key)
        if item is None:
            return error(404, "NoSuchKey", "The specified key does not exist.", key)
        headers = request.headers
        wanted = headers.get("if-match")
        if wanted is not None and not same_etag(wanted, item.etag):
            return error(412, "PreconditionFailed", "If-Match failed")
        unwanted = headers.get("if-none-match")
        if unwanted is not None and same_etag(unwanted, item.etag):
            return Response(304, (("ETag", item.etag),))
        size = len(item.body)
        answer = [
            ("ETag", item.etag),
            ("Last-Modified", item.http_date),
            ("Accept-Ranges", "bytes"),
            ("Content-Type", "application/octet-stream"),
        ]
        span = headers.get("range")
        if span is not None:
            bounds = byte_range(span, size)
            if bounds is None:
                return error(416, "InvalidRange", "The requested range is not satisfiable")
            start, end = bounds
            answer.append(("Content-Range", f"bytes {start}-{end}/{size}"))
            body = memoryview(item.body)[start : end + 1]
            return Response(206, tuple(answer), body)
        if (
            item.checksum is not None
            and headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
        ):
            algorithm, value = item.checksum
            answer += [
                (f"x-amz-checksum-{algorithm}", value),
                ("x-amz-checksum-type", "FULL_OBJECT"),
            ]
        return Response(200, tuple(answer), item.body)

    def _delete(self, request: Request, bucket: Bucket, key: str) -> Response:
        wanted = request.headers.get("if-match")
        if wanted is not None:
            item = bucket.objects.get(key)
            if item is None:
                return error(404, "NoSuchKey", "The specified key does not exist.", key)
            if not same_etag(wanted, item.etag):
                return error(
                    412,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                    key,
                )
        bucket.remove(key)
        return Response(204)

    def _multipart(self, request: Request, bucket: Bucket, key: str, upload: str) -> Response:
        parts = bucket.uploads.get(upload)
        if parts is None:
            return error(404, "NoSuchUpload", "The specified upload does not exist")
        if request.method == "PUT":
            data, _ = payload(request.headers, request.body)
            number = int(request.query.get("partNumber", ["0"])[0])
            parts[number] = data
            return Response(200, (("ETag", f'"{hashlib.md5(data).hexdigest()}"'),))
        if request.method == "DELETE":
            del bucket.uploads[upload]
            return Response(204)
        if request.method == "POST":
            order = sorted(parts)
            digest = hashlib.md5(b"".join(hashlib.md5(parts[n]).digest() for n in order))
            etag = f'"{digest.hexdigest()}-{len(order)}"'
            bucket.put(key, StoredObject(b"".join(parts[n] for n in order), etag, time.time()))
            del bucket.uploads[upload]
            inner = f"{_names(bucket, key)}<ETag>{escape(etag)}</ETag>"
            return self._ok_xml("CompleteMultipartUploadResult", inner)
        return error(501, "NotImplemented", "not implemented")


# A presigned URL's parameters (SigV4's X-Amz-*, SigV2's) are accepted too: signatures are not
# checked.
_OBJECT_PARAMETERS = frozenset({"x-id", "partNumber", "AWSAccessKeyId", "Signature", "Expires"})
_LIST_PARAMETERS = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "continuation-token",
        "start-after",
        "marker",
        "encoding-type",
        "fetch-owner",
        "x-id",
    }
)


def _names(bucket: Bucket, key: str) -> str:
    return f"<Bucket>{escape(bucket.name)}</Bucket><Key>{escape(key)}</Key>"


def _delete_error(key: str, code: str, message: str) -> str:
    return f"<Error><Key>{escape(key)}</Key><Code>{code}</Code><Message>{message}</Message></Error>"
