"""The bench's moto server: moto's, with its SQS made to cost what a queue should, and every SQS
request written to the log by action.

    python -m benchmarks.moto_server [--aws-like] -H 127.0.0.1 -p PORT

``--aws-like`` adds ``tests.support.moto_aws_like``'s patch (DeleteObjects' per-key ETag honoured
as AWS does); without it, ``tests.support.moto_etag_blind``'s (that ETag ignored, as moto did up
to 5.2.5, whatever the version installed). The S3 side is otherwise moto's as released.

**Why SQS is patched.** moto 5.2's queue computes every queue attribute, the approximate message
counts included (a pass over every message, reading a datetime-based clock twice per message),
for each message it sends (``queue.attributes.get("ContentBasedDeduplication")``) and three
times for each message it receives (``is_message_valid_based_on_retention_period`` asks
``get_queue_attributes`` for the retention period). So its cost per message grows with the
queue's depth: with 2,000 messages queued, a SendMessageBatch of 10 took 0.23 s and a
ReceiveMessage + DeleteMessageBatch of 10 took 0.72 s on this machine (200 queued: 0.03 s and
0.08 s), and a 2,000-object burst would measure moto's SQS, about 11 objects/s, rather than the
watcher. Two changes, neither of which changes an answer: moto's SQS module reads
``time.time()`` (what its ``unix_time`` computes through datetimes), and the retention check
reads the queue's ``message_retention_period`` itself, the value ``get_queue_attributes`` would
have returned. The passes over the queue remain (each receive still walks the messages), at
about a microsecond a message.

**Counting.** moto's request log names an SQS request ``POST /`` and nothing more (the action is
in the ``X-Amz-Target`` header), so each SQS request also writes ``sqs-request ACTION CLIENT``
to the log, CLIENT being ``s3drain`` when the User-Agent says ``s3drain/`` (the watcher's own
client) and ``other`` for anyone else (the bench sending events, checking a queue's depth).
``benchmarks/servers.py`` counts those lines.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

import moto.sqs.models as sqs_models
from moto import server
from moto.sqs.responses import SQSResponse

from tests.support import moto_aws_like, moto_etag_blind

SQS_LINE = "sqs-request"
S3DRAIN_CLIENT = "s3drain"
OTHER_CLIENT = "other"


def _unix_time(dt: Any = None) -> float:
    if dt is None:
        return time.time()
    return float(_moto_unix_time(dt))


def _unix_time_millis(dt: Any = None) -> float:
    return _unix_time(dt) * 1000.0


_moto_unix_time = sqs_models.unix_time  # type: ignore[attr-defined]


def _retained(self: Any, queue_name: str, message: Any) -> bool:
    """``SQSBackend.is_message_valid_based_on_retention_period`` without computing every
    attribute of the queue (its message counts included) to read one of them."""
    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
    return bool(retain_until > time.time())


def _logged(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        agent = str(self.headers.get("User-Agent", ""))
        client = S3DRAIN_CLIENT if "s3drain/" in agent else OTHER_CLIENT
        # One write per line: werkzeug's request lines go to the same stream from other threads.
        sys.stderr.write(f"{SQS_LINE} {self._get_action()} {client}\n")
        sys.stderr.flush()
        return original(self)

    return call_action


_patched = False


def patch_sqs() -> None:
    """Idempotent."""
    global _patched  # noqa: PLW0603
    if _patched:
        return
    _patched = True
    sqs_models.unix_time = _unix_time  # type: ignore[attr-defined]
    sqs_models.unix_time_millis = _unix_time_millis  # type: ignore[attr-defined]
    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = _retained  # type: ignore[method-assign]
    SQSResponse.call_action = _logged(SQSResponse.call_action)  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--aws-like" in args:
        args.remove("--aws-like")
        moto_aws_like.patch()
    else:
        moto_etag_blind.install()
    patch_sqs()
    server.main(args)


if __name__ == "__main__":
    main()
