"""One S3 server under test, as the ``s3_endpoint`` fixture hands it to a test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from tests.support.server import S3Client, s3_client

# The servers ``s3_endpoint`` runs a test against, by default all of them:
# moto ignoring DeleteObjects' per-key ETag (tests.support.moto_etag_blind: as moto up to
# 5.2.5 did); moto patched to honour it as AWS does
# (tests.support.moto_aws_like); LocalStack's S3 (tests.support.localstack).
SERVERS = ("moto", "moto-aws-like", "localstack")


class S3Endpoint:
    """A server's ``name`` (one of SERVERS) and ``url``, emptied for the test, and clients.

    ``client(**config)`` makes a botocore client for it (config as for ``s3_client``); the
    fixture closes every client made this way when the test ends.
    """

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self._clients: list[S3Client] = []

    def client(self, **config: Any) -> S3Client:
        client = s3_client(self.url, **config)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def __repr__(self) -> str:
        return f"S3Endpoint({self.name!r}, {self.url!r})"


def answer(call: Callable[[], Any]) -> str:
    """'ok' or the HTTP status and S3 error code of a call."""
    try:
        call()
    except ClientError as error:
        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
        return f"{status} {error.response['Error'].get('Code')}"
    return "ok"
