"""The listing's ListObjectsV2 sent directly (`s3/direct.py`) and read by `s3/list_xml.py`,
where the run's GETs go direct: the same request botocore would send, to the same endpoint,
signed the same way. Its answer is botocore's dict for the fields a drain reads, so
`s3/listing.py` turns it into records as before.

An answer botocore would have handled itself (a redirect to the bucket's region, a signature
it would have built differently) turns direct requests off for the rest of the run
(`DirectSwitch`), and botocore lists from there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError

from s3drain.drain.direct_switch import DirectSwitch, sent_directly
from s3drain.s3.client import S3Client, parse_timestamp
from s3drain.s3.direct import Connection, Endpoint
from s3drain.s3.list_xml import parse_list_objects_v2
from s3drain.s3.sigv4 import Credentials
from s3drain.s3.xml_answer import UnreadableAnswer

OPERATION = "ListObjectsV2"


class UnreadableListing(BotoCoreError):
    """An answer that is not a listing: the run's listing fails with it, as for any other
    error botocore raises (not a bug of s3drain's)."""

    fmt = "unreadable ListObjectsV2 answer from {url}: {why}"


class DirectListing:
    """`client.list_objects_v2(**params)`, by direct requests to `bucket` (the endpoint's),
    for one thread at a time (the listing's own)."""

    def __init__(
        self,
        endpoint: Endpoint,
        bucket: str,
        *,
        credentials: Callable[[], Credentials],
        client: S3Client,
        switch: DirectSwitch,
        count: Callable[[str, int], None],
        endpoint_url: str,
    ) -> None:
        self._conn = Connection(endpoint)
        self._bucket = bucket
        self._credentials = credentials
        self._client = client
        self._switch = switch
        self._count = count
        self._url = endpoint_url

    def __call__(self, **params: Any) -> dict[str, Any]:
        if not self._direct(params):
            return dict(self._client.list_objects_v2(**params))
        self._count(OPERATION, 1)
        body = sent_directly(
            lambda: self._conn.list_objects_v2(
                self._credentials(),
                params["Prefix"],
                params["MaxKeys"],
                params.get("ContinuationToken"),
            ),
            switch=self._switch,
            url=self._url,
            operation=OPERATION,
        )
        if body is None:
            return dict(self._client.list_objects_v2(**params))
        try:
            return parse_list_objects_v2(body, parse_timestamp)
        except UnreadableAnswer as exc:
            raise UnreadableListing(url=self._url, why=str(exc)) from None

    def _direct(self, params: dict[str, Any]) -> bool:
        """Only the request the endpoint was learned for, with nothing botocore would add."""
        known = {"Bucket", "Prefix", "MaxKeys", "ContinuationToken"}
        return self._switch.on and params.get("Bucket") == self._bucket and set(params) <= known

    def close(self) -> None:
        self._conn.close()
