"""`s3drain history`'s arguments and help."""

from __future__ import annotations

import argparse

from s3drain.cli.options import Parser
from s3drain.config.sources import DEFAULT_ENV_FILE
from s3drain.local.ledger_rows import HISTORY_STATUSES

HISTORY_EPILOG = """\
one line per delivery: when it was delivered, the key, its version (ETag, and
VersionId in a versioned bucket), where the file was written, the checksum
s3drain verified, and what became of the object in S3:
  deleted <when>    S3 confirmed the delete
  kept in S3        not deleted yet (--no-delete, or the delete failed)
  changed in S3     a newer version arrived before the delete; it stays in S3
  in flight         a run was stopped mid-way; the next run finishes it

examples:
  s3drain history exports/2024/a.csv --local-base-path /data/etl
  s3drain history 'exports/2024/*.csv' --since 2d --status deleted
  s3drain history --since 2026-11-01 --json | jq -r .key

The ledger keeps a delivery for --ledger-retention (default 90d) after its
object left S3. The audit log (.s3drain/audit.jsonl) keeps every outcome,
objects left in S3 included. Exit codes: 0 found, 1 nothing matched, 2 usage
error or no ledger at this base path.
"""


def add_history_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    history = commands.add_parser(
        "history",
        help="what happened to a key: the deliveries the ledger recorded",
        description="Answer 'what happened to this key?' from the ledger, without jq.",
        epilog=HISTORY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    history.add_argument(
        "key",
        nargs="?",
        metavar="KEY",
        help="a key, or a glob with * ? [...] ('*' crosses '/' here); all keys when left out",
    )
    history.add_argument(
        "--local-base-path", metavar="DIR", help="where the ledger lives (LOCAL_BASE_PATH)"
    )
    history.add_argument("--bucket", help="only this bucket's deliveries (BUCKET_NAME)")
    history.add_argument(
        "--since",
        metavar="WHEN",
        help="delivered at or after WHEN: an age (90m, 2d) or a date (2026-11-01, UTC)",
    )
    history.add_argument("--status", choices=HISTORY_STATUSES, help="only deliveries in this state")
    history.add_argument(
        "--json",
        dest="json_summary",
        action="store_true",
        default=None,
        help="one JSON object per line (JSON Lines)",
    )
    history.add_argument(
        "--env-file", metavar="FILE", help=f"settings file (default {DEFAULT_ENV_FILE}, if present)"
    )
