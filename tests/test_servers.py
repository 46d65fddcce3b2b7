"""What each S3 server under test really does with the requests s3drain's exact deletes rely on.

Plain botocore calls, no s3drain code: these tests pin facts about the servers, so that an
upgrade of moto or LocalStack that changes one is noticed (and docs/compatibility.md updated).

Each ``EXPECTED_*`` table says what AWS documents first, then what each server does. A server
whose answer differs from AWS's is marked ``# deviates``; the test asserts the server's real
answer, not AWS's.
"""

from __future__ import annotations

import base64
import os
import zlib
from collections.abc import Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import S3Endpoint
from tests.support.endpoints import answer as _answer
from tests.support.server import S3Client

BUCKET = "servers"
WRONG_ETAG = '"' + "0" * 32 + '"'
MISSING = "no/such/key"
MiB = 1024 * 1024


def _check(endpoint: S3Endpoint, expected: Mapping[str, str | None], observed: str | None) -> None:
    want = expected[endpoint.name]
    assert observed == want, (
        f"{endpoint.name} now answers {observed!r}; pinned {want!r} (AWS: {expected['aws']!r}). "
        "If a server upgrade changed this, update this table and docs/compatibility.md."
    )


def _exists(client: S3Client, key: str, bucket: str = BUCKET) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise
    return True


def _per_key(answer: dict[str, Any], key: str) -> str:
    """What DeleteObjects said of ``key``: 'Deleted', 'Deleted, delete marker' or the error code."""
    for error in answer.get("Errors", []):
        if error["Key"] == key:
            return str(error["Code"])
    for deleted in answer.get("Deleted", []):
        if deleted["Key"] == key:
            return "Deleted, delete marker" if deleted.get("DeleteMarker") else "Deleted"
    return "not mentioned"


@pytest.fixture
def client(s3_endpoint: S3Endpoint) -> S3Client:
    """A client of the server under test, one attempt per call, with an empty BUCKET."""
    # One attempt: a 501 or 5xx is a fact to record here, not a fault to retry.
    s3 = s3_endpoint.client(retries={"total_max_attempts": 1})
    s3.create_bucket(Bucket=BUCKET)
    return s3


def _put(client: S3Client, key: str, body: bytes = b"payload") -> str:
    etag: str = client.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"]
    return etag


def _versioned(client: S3Client) -> None:
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})


# --- conditional GETs --------------------------------------------------------------------


def test_get_if_match_mismatch_is_412(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """Every server honours If-Match on GET: a stale ETag is 412, never the new bytes."""
    _put(client, "k")
    observed = _answer(lambda: client.get_object(Bucket=BUCKET, Key="k", IfMatch=WRONG_ETAG))
    assert observed == "412 PreconditionFailed"


def test_head_if_match_mismatch_is_412(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """HEAD honours If-Match here too (fauxqs and s3rver ignore it on HEAD, so a head-checked
    delete must compare the ETag HEAD returns rather than wait for a 412).
    """
    _put(client, "k")
    observed = _answer(lambda: client.head_object(Bucket=BUCKET, Key="k", IfMatch=WRONG_ETAG))
    # HEAD has no body, so botocore knows only the status: the code is the status again.
    assert observed == "412 412"


def test_ranged_get_with_if_match(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """A ranged GET honours If-Match: the right ETag gets 206 and the range, a stale one 412."""
    etag = _put(client, "k", b"0123456789")
    part = client.get_object(Bucket=BUCKET, Key="k", Range="bytes=2-5", IfMatch=etag)
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert part["ContentRange"] == "bytes 2-5/10"
    assert part["Body"].read() == b"2345"
    stale = _answer(
        lambda: client.get_object(Bucket=BUCKET, Key="k", Range="bytes=2-5", IfMatch=WRONG_ETAG)
    )
    assert stale == "412 PreconditionFailed"


# --- DeleteObject with If-Match ------------------------------------------------------------

EXPECTED_DELETE_IF_MATCH_MISMATCH = {
    "aws": "412 PreconditionFailed, kept",
    "moto": "412 PreconditionFailed, kept",
    "moto-aws-like": "412 PreconditionFailed, kept",
    "localstack": "501 NotImplemented, kept",  # deviates: If-Match on DELETE not implemented
}


def test_delete_object_if_match_mismatch(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """AWS: 412, object kept. LocalStack deviates: 501 NotImplemented (the object is kept too)."""
    _put(client, "k")
    answer = _answer(lambda: client.delete_object(Bucket=BUCKET, Key="k", IfMatch=WRONG_ETAG))
    observed = f"{answer}, {'kept' if _exists(client, 'k') else 'deleted'}"
    _check(s3_endpoint, EXPECTED_DELETE_IF_MATCH_MISMATCH, observed)


def test_delete_object_if_match_match_deletes(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """The right ETag deletes, where If-Match on DELETE is implemented at all."""
    etag = _put(client, "k")
    answer = _answer(lambda: client.delete_object(Bucket=BUCKET, Key="k", IfMatch=etag))
    expected = {"localstack": "501 NotImplemented"}.get(s3_endpoint.name, "ok")  # deviates
    assert answer == expected
    assert _exists(client, "k") == (expected != "ok")


EXPECTED_DELETE_IF_MATCH_MISSING = {
    "aws": "404 NoSuchKey",
    "moto": "404 NoSuchKey",
    "moto-aws-like": "404 NoSuchKey",
    "localstack": "501 NotImplemented",  # deviates
}


def test_delete_object_if_match_on_missing_key(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """AWS: 404 NoSuchKey, which is what makes a probe on a random missing key conclusive.

    LocalStack deviates: 501 NotImplemented, whatever the key.
    """
    answer = _answer(lambda: client.delete_object(Bucket=BUCKET, Key=MISSING, IfMatch=WRONG_ETAG))
    _check(s3_endpoint, EXPECTED_DELETE_IF_MATCH_MISSING, answer)


# --- DeleteObjects with a per-key ETag -----------------------------------------------------

EXPECTED_DELETE_OBJECTS_WRONG_ETAG = {
    "aws": "PreconditionFailed, kept",
    "moto": "Deleted, deleted",  # deviates: the ETag is ignored
    "moto-aws-like": "PreconditionFailed, kept",
    "localstack": "Deleted, deleted",  # deviates: the ETag is ignored
}


def test_delete_objects_with_wrong_etag(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """AWS: a per-key PreconditionFailed error, object kept; the other keys are still deleted.

    moto and LocalStack deviate: they ignore the ETag and delete the object.
    """
    _put(client, "stale")
    good_etag = _put(client, "fresh")
    answer = client.delete_objects(
        Bucket=BUCKET,
        Delete={
            "Objects": [
                {"Key": "stale", "ETag": WRONG_ETAG},
                {"Key": "fresh", "ETag": good_etag},
                {"Key": "plain"},
            ]
        },
    )
    observed = f"{_per_key(answer, 'stale')}, {'kept' if _exists(client, 'stale') else 'deleted'}"
    _check(s3_endpoint, EXPECTED_DELETE_OBJECTS_WRONG_ETAG, observed)
    # The matching ETag and the unconditional key are deleted everywhere.
    assert _per_key(answer, "fresh") == "Deleted"
    assert _per_key(answer, "plain") == "Deleted"
    assert not _exists(client, "fresh")


def test_delete_objects_wrong_etag_is_kept_in_quiet_mode(
    s3_endpoint: S3Endpoint, client: S3Client
) -> None:
    """Quiet mode still reports errors; the servers that honour the ETag keep the object."""
    _put(client, "stale")
    answer = client.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": "stale", "ETag": WRONG_ETAG}], "Quiet": True}
    )
    honours = s3_endpoint.name == "moto-aws-like"
    assert [e["Code"] for e in answer.get("Errors", [])] == (
        ["PreconditionFailed"] if honours else []
    )
    assert _exists(client, "stale") == honours


EXPECTED_DELETE_OBJECTS_ETAG_MISSING = {
    "aws": "NoSuchKey",
    "moto": "Deleted",  # deviates: the ETag is ignored
    "moto-aws-like": "NoSuchKey",
    "localstack": "Deleted",  # deviates: the ETag is ignored
}


def test_delete_objects_with_etag_on_missing_key(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """AWS: a per-key NoSuchKey error (as DeleteObject with If-Match answers 404).

    moto and LocalStack deviate: they ignore the ETag and report the key Deleted.
    """
    answer = client.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": MISSING, "ETag": WRONG_ETAG}]}
    )
    _check(s3_endpoint, EXPECTED_DELETE_OBJECTS_ETAG_MISSING, _per_key(answer, MISSING))


# --- unconditional deletes of a missing key ----------------------------------------------


def test_unconditional_delete_of_missing_key_succeeds(
    s3_endpoint: S3Endpoint, client: S3Client
) -> None:
    """S3 answers 204 / Deleted for a key that is not there, and so does every server here.

    A server answering 404 here would make a conditional probe on a missing key inconclusive:
    a 404 could then mean "condition honoured" or just "no such key".
    """
    single = client.delete_object(Bucket=BUCKET, Key=MISSING)
    assert single["ResponseMetadata"]["HTTPStatusCode"] == 204
    batch = client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": MISSING}]})
    assert _per_key(batch, MISSING) == "Deleted"
    assert not batch.get("Errors")


# --- versioned buckets ----------------------------------------------------------------------

# What a conditional delete of a missing key does in a versioned bucket. A server that ignores
# the condition writes a delete marker, which a probe must then remove.
EXPECTED_VERSIONED_PROBE = {
    ("aws", "delete_object"): "404 NoSuchKey, no marker",
    ("moto", "delete_object"): "404 NoSuchKey, no marker",
    ("moto-aws-like", "delete_object"): "404 NoSuchKey, no marker",
    ("localstack", "delete_object"): "501 NotImplemented, no marker",  # deviates
    ("aws", "delete_objects"): "NoSuchKey, no marker",
    # deviates twice: ignores the ETag, and writes no marker for a missing key (see below)
    ("moto", "delete_objects"): "Deleted, no marker",
    ("moto-aws-like", "delete_objects"): "NoSuchKey, no marker",
    ("localstack", "delete_objects"): "Deleted, delete marker, marker",  # deviates
}


EXPECTED_VERSIONED_PLAIN_DELETE_OF_MISSING_KEY = {
    "aws": "delete marker",
    "moto": "no marker",  # deviates: moto finds no key to put a marker on
    "moto-aws-like": "no marker",  # deviates, as moto
    "localstack": "delete marker",
}


def _delete_markers(client: S3Client, key: str) -> list[str]:
    versions = client.list_object_versions(Bucket=BUCKET, Prefix=key)
    assert not versions.get("Versions"), "a conditional delete of a missing key wrote a version"
    return [m["VersionId"] for m in versions.get("DeleteMarkers", []) if m["Key"] == key]


@pytest.mark.parametrize("operation", ["delete_object", "delete_objects"])
def test_versioned_conditional_delete_of_missing_key(
    s3_endpoint: S3Endpoint, client: S3Client, operation: str
) -> None:
    """Where the condition is ignored a delete marker may be left behind (LocalStack's
    DeleteObjects; not moto's, which writes no marker for a missing key), and deleting that
    marker by its VersionId removes every trace of the key.
    """
    _versioned(client)
    if operation == "delete_object":
        answer = _answer(
            lambda: client.delete_object(Bucket=BUCKET, Key=MISSING, IfMatch=WRONG_ETAG)
        )
    else:
        batch = client.delete_objects(
            Bucket=BUCKET, Delete={"Objects": [{"Key": MISSING, "ETag": WRONG_ETAG}]}
        )
        answer = _per_key(batch, MISSING)
    markers = _delete_markers(client, MISSING)
    assert len(markers) <= 1
    observed = f"{answer}, {'marker' if markers else 'no marker'}"
    _check(
        s3_endpoint,
        {k[0]: v for k, v in EXPECTED_VERSIONED_PROBE.items() if k[1] == operation},
        observed,
    )
    for marker in markers:
        gone = client.delete_object(Bucket=BUCKET, Key=MISSING, VersionId=marker)
        assert gone["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert gone.get("VersionId") == marker
    assert _delete_markers(client, MISSING) == []


def test_versioned_unconditional_delete_of_missing_key(
    s3_endpoint: S3Endpoint, client: S3Client
) -> None:
    """AWS writes a delete marker even where there was no object; moto writes none."""
    _versioned(client)
    single = client.delete_object(Bucket=BUCKET, Key=MISSING)
    assert single["ResponseMetadata"]["HTTPStatusCode"] == 204
    markers = _delete_markers(client, MISSING)
    observed = "delete marker" if markers else "no marker"
    _check(s3_endpoint, EXPECTED_VERSIONED_PLAIN_DELETE_OF_MISSING_KEY, observed)
    if markers:
        assert single.get("DeleteMarker") is True
        assert single.get("VersionId") == markers[0]


def test_versioned_delete_by_version_id(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """Deleting the verified VersionId removes that version only; a newer one survives."""
    _versioned(client)
    old = client.put_object(Bucket=BUCKET, Key="k", Body=b"old")["VersionId"]
    new = client.put_object(Bucket=BUCKET, Key="k", Body=b"new")["VersionId"]
    assert old != new
    client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "k", "VersionId": old}]})
    versions = client.list_object_versions(Bucket=BUCKET, Prefix="k")
    assert [v["VersionId"] for v in versions.get("Versions", [])] == [new]
    assert not versions.get("DeleteMarkers")
    assert client.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"new"


# --- checksums, listing, odd keys ----------------------------------------------------------


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_multipart_full_object_crc32(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """A multipart upload with a FULL_OBJECT CRC32 gives that CRC32 back on GET (and botocore
    validates it while reading, which it does not for a composite checksum).
    """
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    upload = client.create_multipart_upload(
        Bucket=BUCKET, Key="big", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )
    done = []
    for number, data in enumerate(parts, start=1):
        part = client.upload_part(
            Bucket=BUCKET,
            Key="big",
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="CRC32",
        )
        done.append(
            {"PartNumber": number, "ETag": part["ETag"], "ChecksumCRC32": part["ChecksumCRC32"]}
        )
    whole = b"".join(parts)
    client.complete_multipart_upload(
        Bucket=BUCKET,
        Key="big",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": done},
        ChecksumCRC32=_crc32(whole),
        ChecksumType="FULL_OBJECT",
    )
    got = client.get_object(Bucket=BUCKET, Key="big", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == _crc32(whole)
    assert got["ChecksumType"] == "FULL_OBJECT"
    assert got["ETag"].strip('"').endswith("-2")
    assert got["Body"].read() == whole


def test_list_objects_v2_pages_by_max_keys(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """MaxKeys=2 over five keys: pages of 2, 2 and 1, in key order, chained by tokens."""
    keys = [f"p/{i}" for i in range(5)]
    for key in keys:
        _put(client, key)
    pages: list[list[str]] = []
    token: dict[str, str] = {}
    while True:
        page = client.list_objects_v2(Bucket=BUCKET, Prefix="p/", MaxKeys=2, **token)
        pages.append([item["Key"] for item in page.get("Contents", [])])
        assert page["KeyCount"] == len(pages[-1])
        if not page["IsTruncated"]:
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
        assert len(pages) < 5, "the listing never ends"
    assert pages == [keys[0:2], keys[2:4], keys[4:5]]


ODD_KEYS = [
    "../x",
    "/abs",
    "a//b",
    "dir/",
    "a",
    "a/b",
    "with space",
    "plus+sign",
    "percent%2F",
    "q?x=1&y",
    "hash#frag",
    "tab\tkey",
    "ünï/cødé ✓",
    "amp&lt;",
    "k" * 1000,
]


def test_odd_keys_round_trip(s3_endpoint: S3Endpoint, client: S3Client) -> None:
    """Keys s3drain must survive come back from listing exactly as written, read back their
    own bytes, and go in one DeleteObjects.
    """
    for key in ODD_KEYS:
        _put(client, key, key.encode())
    listed = [item["Key"] for item in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert sorted(listed) == sorted(ODD_KEYS)
    for key in ODD_KEYS:
        assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == key.encode(), key
    answer = client.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": key} for key in ODD_KEYS]}
    )
    assert not answer.get("Errors")
    assert sorted(d["Key"] for d in answer["Deleted"]) == sorted(ODD_KEYS)
    assert client.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
