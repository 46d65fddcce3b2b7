"""`s3drain events`'s arguments and help (`events setup` for now; `watch` joins later)."""

from __future__ import annotations

import argparse

from s3drain.cli.options import Parser, add_output_options, add_s3_options

SETUP_EPILOG = """\
what it makes (each only where missing or different; run it again and it
changes nothing):
  <queue>-dlq   the dead-letter queue, keeping messages 14 days
  <queue>       long polling (20 s), --visibility-timeout, a redrive policy
                sending a message to the dead-letter queue after
                --max-receive-count receives, and an access policy statement
                letting s3.amazonaws.com send from this bucket only
                (aws:SourceArn, aws:SourceAccount); other statements are kept
  the bucket's notification configuration: s3:ObjectCreated:* under --prefix
                to the queue; other queues, topics, Lambda functions and the
                EventBridge switch are kept as they are

The queue defaults to s3drain-<bucket>-<prefix>. --dry-run reads what is
there, prints the JSON it would apply, and changes nothing. --json prints
the result as JSON.

settings (flag, or environment / config/.env): BUCKET_NAME, PATH_TO_SEARCH,
S3DRAIN_QUEUE_NAME, S3DRAIN_MAX_RECEIVE_COUNT, S3DRAIN_SQS_VISIBILITY_TIMEOUT,
S3DRAIN_BUCKET_ACCOUNT, S3DRAIN_SQS_ENDPOINT_URL (or AWS_ENDPOINT_URL_SQS;
'aws' for AWS's own), and the S3 connection's. The SQS endpoint follows
--endpoint-url / AWS_ENDPOINT_URL (moto and LocalStack serve every service
on one URL), never S3_ENDPOINT_URL or AWS_ENDPOINT_URL_S3 (MinIO has no SQS).

permissions: s3:GetBucketNotification, s3:PutBucketNotification,
sqs:GetQueueUrl, sqs:CreateQueue, sqs:GetQueueAttributes,
sqs:SetQueueAttributes.

exit codes: 0 done (or nothing to do), 2 usage or configuration error
(a missing bucket, S3 refusing the configuration), 5 a failure of S3 or SQS,
6 a permission is missing: the message names it; the steps before it stay
done and running setup again finishes the rest.

example:
  s3drain events setup --bucket lake --prefix exports/ --dry-run
  s3drain events setup --bucket lake --prefix exports/ --region eu-west-1
"""


def add_events_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    events = commands.add_parser(
        "events",
        help="S3 event notifications through SQS: set up the queue and the bucket",
        description="Drain on events: S3's notifications of new objects, through an SQS queue.",
    )
    actions = events.add_subparsers(dest="events_command", metavar="{setup}", required=True)
    setup = actions.add_parser(
        "setup",
        help="create the queue, its dead-letter queue and policies, and the bucket's "
        "notification configuration",
        description=(
            "Create (or bring up to date) the SQS queue a watcher reads, its dead-letter\n"
            "queue, the policy letting S3 send to it, and the bucket's notification\n"
            "configuration for new objects under the prefix. Idempotent; merges with what\n"
            "the bucket and the queue already have."
        ),
        epilog=SETUP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    setup.add_argument(
        "--prefix", help="notify for new objects under this prefix; '' for all (PATH_TO_SEARCH)"
    )
    queue = setup.add_argument_group("the queue")
    queue.add_argument("--queue-name", metavar="NAME", help="default s3drain-<bucket>-<prefix>")
    queue.add_argument(
        "--max-receive-count",
        metavar="N",
        help="receives before a message moves to the dead-letter queue (default 5)",
    )
    queue.add_argument(
        "--visibility-timeout",
        dest="sqs_visibility_timeout",
        metavar="SECONDS",
        help="the queue's default visibility timeout (default 60)",
    )
    queue.add_argument(
        "--bucket-account",
        metavar="ACCOUNT_ID",
        help="the bucket owner's account, when it is not the queue's (aws:SourceAccount)",
    )
    queue.add_argument(
        "--sqs-endpoint-url",
        metavar="URL",
        help="SQS's endpoint, or 'aws' (default: --endpoint-url, else AWS's for the region)",
    )
    add_s3_options(setup)
    add_output_options(setup)
