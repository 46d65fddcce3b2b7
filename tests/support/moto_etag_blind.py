"""moto, patched to ignore the per-key ETag of DeleteObjects: the suite's server that does not
honour it.

Up to 5.2.5, moto read only ``Key`` and ``VersionId`` from each ``<Object>`` of a DeleteObjects
body and deleted whatever the ``<ETag>`` said, as many S3-compatible servers still do. 5.2.6
(2026-12-04) checks it as AWS does. The suite needs both kinds of server: s3drain must find
out which one it talks to (`s3/probe.py`) and never trust a batched ETag where it is ignored.
AWS's kind is `moto_aws_like.py` (and moto from 5.2.6 itself); this module keeps the other
kind, whatever moto version is installed. DeleteObject's ``If-Match`` stays honoured, as in
every moto since 5.1.

Installed by the suite's conftest and by the modules that run moto in process outside pytest
(`seamtrial.py`, `drainkit.py`); ``python -m tests.support.moto_etag_blind -H 127.0.0.1 -p
PORT`` (moto.server's arguments) is the server `server.MotoServer` starts.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from moto import server
from moto.s3.responses import S3Response

# DeleteObjects names its per-key check "ETag"; DeleteObject's is "If-Match".
_DELETE_OBJECTS_CONDITION = "ETag"
_MARK = "_s3drain_etag_blind"


def _blind(verify: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(verify)
    def verify_unless_batched(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("failed_condition") == _DELETE_OBJECTS_CONDITION:
            return None
        return verify(self, *args, **kwargs)

    setattr(verify_unless_batched, _MARK, True)
    return verify_unless_batched


def install() -> None:
    """Idempotent. A moto without the per-key check (up to 5.2.5) needs nothing."""
    verify = getattr(S3Response, "_verify_etag_match_for_deletion", None)
    if verify is None or getattr(verify, _MARK, False):
        return
    S3Response._verify_etag_match_for_deletion = _blind(verify)  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    install()
    server.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
