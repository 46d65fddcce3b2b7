"""`s3drain watch`'s arguments and help: every drain option, the queue, the reconcile pass."""

from __future__ import annotations

import argparse

from s3drain.cli.drain_args import add_drain_options
from s3drain.cli.options import Parser

WATCH_DESCRIPTION = """\
Drain each object seconds after it lands: long-poll the SQS queue that receives
the bucket's s3:ObjectCreated notifications ('s3drain events setup' makes it),
and put every object an event names through the same pipeline as a run: the
ledger, the verified and durable download, the exact delete, the audit line.
An event is a hint: the watcher's GET names the object the event named (its
ETag), so an object overwritten or deleted since is left to its own event.

A message leaves the queue only when every object it names is settled:
delivered and deleted, already gone, or left in S3 with its reason in the audit
log. While an object is in flight the message's visibility is extended, so no
other watcher starts it; on a stop the unfinished messages are made visible
again at once. Notifications can be late or (rarely) missing: at start and then
every --reconcile the watcher also lists the prefix, so nothing is stranded."""

WATCH_EPILOG = """\
settings: everything 's3drain drain --help' lists, and S3DRAIN_QUEUE_URL,
S3DRAIN_RECONCILE, S3DRAIN_SQS_ENDPOINT_URL (or AWS_ENDPOINT_URL_SQS; 'aws' for
AWS's own), S3DRAIN_SQS_RECEIVERS, S3DRAIN_SQS_WAIT_SECONDS,
S3DRAIN_SQS_VISIBILITY_TIMEOUT. The SQS endpoint follows --endpoint-url /
AWS_ENDPOINT_URL (moto, LocalStack), never S3_ENDPOINT_URL (MinIO has no SQS).

records the watcher does not drain: another bucket's or outside the prefix
(a shared queue) are acknowledged and counted as ignored; objects the filters
(--include/--exclude/--shard) leave are acknowledged and stay in S3, as a run
leaves them; an event younger than --min-age waits in the watcher (its message
kept invisible) until it is old enough. Messages that are not S3 events stay
in the queue for its dead-letter queue, logged once each.

one watcher per local base path: the lock that keeps two runs apart keeps two
watchers apart too. Scale out with more hosts (each its own base path) on one
queue; SQS hands each message to one of them.

permissions: what a drain needs, and sqs:ReceiveMessage, sqs:DeleteMessage,
sqs:ChangeMessageVisibility on the queue (docs/scheduling.md#iam).

exit codes: as a drain's, except that an object overwritten or deleted since its
event (a stale event: the newer version has its own) does not make it 1; 130
after a stop (SIGTERM, Ctrl-C); 5 when S3 or SQS stays unreachable.

examples:
  s3drain events setup --bucket lake --prefix exports/    # prints the queue URL
  s3drain watch --bucket lake --prefix exports/ --local-base-path /data/etl \\
      --queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/s3drain-lake-exports
  s3drain watch --env-file /etc/s3drain.env --once       # from cron: drain, then exit
"""


def add_watch_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    watch = commands.add_parser(
        "watch",
        help="drain each object seconds after it lands, from S3's event notifications (SQS)",
        description=WATCH_DESCRIPTION,
        epilog=WATCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    events = watch.add_argument_group("events")
    events.add_argument(
        "--queue-url",
        metavar="URL",
        help="the SQS queue S3 notifies (S3DRAIN_QUEUE_URL; 's3drain events setup' prints it)",
    )
    events.add_argument(
        "--reconcile",
        metavar="AGE",
        help="list the prefix at start and then every AGE, for objects whose events were late, "
        "lost or sent while no watcher ran (default 1h; 0: never)",
    )
    events.add_argument(
        "--once",
        action="store_true",
        default=None,
        help="drain until the queue is empty (and one reconcile pass is done), then exit",
    )
    events.add_argument(
        "--sqs-endpoint-url",
        metavar="URL",
        help="SQS's endpoint, or 'aws' (default: --endpoint-url, else AWS's for the region)",
    )
    events.add_argument(
        "--sqs-receivers",
        metavar="N",
        help="threads long-polling the queue (default 2)",
    )
    events.add_argument(
        "--sqs-wait-seconds",
        metavar="N",
        help="long-poll wait, 1 to 20 (default 20; 1 with --once)",
    )
    events.add_argument(
        "--visibility-timeout",
        dest="sqs_visibility_timeout",
        metavar="SECONDS",
        help="asked for on every receive and extended while an object is in flight (default 60)",
    )
    add_drain_options(watch)
