"""DeleteObjects sent directly (`s3/direct.py`), its body built and its answer read by
`s3/delete_xml.py`, in the form botocore itself would send (`s3/delete_form.py`): the same
keys with the same ETags or VersionIds, the same checksum, the same signature. What the run
does with the answer (`delete_requests.Sender`) is the same either way.

An answer botocore would have handled itself turns direct requests off for the rest of the
run (`DirectSwitch`), and botocore sends the deletes from there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError

from s3drain.drain.direct_switch import DirectSwitch, sent_directly
from s3drain.drain.fetch_pool import exception_for
from s3drain.s3.client import S3Client
from s3drain.s3.delete_form import DeleteForm
from s3drain.s3.delete_xml import ErrorDocument, delete_body, parse_delete_result
from s3drain.s3.direct import Connections, Endpoint, HttpFailure
from s3drain.s3.sigv4 import Credentials
from s3drain.s3.xml_answer import UnreadableAnswer

OPERATION = "DeleteObjects"


class UnreadableDeletes(BotoCoreError):
    """An answer that is not a DeleteObjects result: as for any failed request, each of its
    objects is settled by asking S3 (`delete_requests.Sender._unanswered`)."""

    fmt = "unreadable DeleteObjects answer from {url}: {why}"


class DirectDeletes:
    """`client.delete_objects(**params)`, by direct requests to `bucket` (the endpoint's), one
    kept connection per thread."""

    def __init__(
        self,
        endpoint: Endpoint,
        bucket: str,
        form: Callable[[], DeleteForm | None],
        *,
        credentials: Callable[[], Credentials],
        client: S3Client,
        switch: DirectSwitch,
        count: Callable[[str, int], None],
        endpoint_url: str,
    ) -> None:
        self._bucket = bucket
        self._learn = form  # at the first batch: a run that deletes nothing never asks
        self._form: DeleteForm | None = None
        self._learned = False
        self._credentials = credentials
        self._client = client
        self._switch = switch
        self._count = count
        self._url = endpoint_url
        self._conns = Connections(endpoint)
        self._lock = threading.Lock()

    def __call__(self, **params: Any) -> dict[str, Any]:
        form = self._form_for(params)
        if form is None:
            return dict(self._client.delete_objects(**params))
        delete = params["Delete"]
        body = delete_body(delete["Objects"], bool(delete.get("Quiet", False)))
        self._count(OPERATION, 1)
        answer = sent_directly(
            lambda: self._conns.mine().delete_objects(
                self._credentials(),
                body,
                headers=form.headers(body),
                payload_hash=form.payload_hash(body),
            ),
            switch=self._switch,
            url=self._url,
            operation=OPERATION,
        )
        if answer is None:
            return dict(self._client.delete_objects(**params))
        try:
            return parse_delete_result(answer)
        except ErrorDocument as exc:  # S3's "200 and an error": as botocore raises it
            failure = HttpFailure(200, exc.code, exc.message)
            raise exception_for(failure, self._url, OPERATION) from None
        except UnreadableAnswer as exc:
            raise UnreadableDeletes(url=self._url, why=str(exc)) from None

    def _form_for(self, params: dict[str, Any]) -> DeleteForm | None:
        """The form to send these deletes in directly; None: botocore sends them. Only the
        request the form was learned for, with nothing botocore would add."""
        delete = params.get("Delete")
        plain = (
            self._switch.on
            and params.get("Bucket") == self._bucket
            and set(params) == {"Bucket", "Delete"}
            and isinstance(delete, dict)
            and set(delete) <= {"Objects", "Quiet"}
        )
        if not plain:
            return None
        with self._lock:
            if not self._learned:
                self._form, self._learned = self._learn(), True
            return self._form

    def close(self) -> None:
        self._conns.close()
