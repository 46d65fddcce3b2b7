"""`s3drain drain`'s arguments and help: what it does, every option, the settings' names,
examples and exit codes."""

from __future__ import annotations

import argparse

from s3drain.cli.options import FilterAction, Parser, add_output_options, add_s3_options

DESCRIPTION = """\
Drain an S3 prefix into a local folder without ever losing an object.

For every object under the prefix, s3drain either deletes it from S3 because it
was already delivered (its ledger says so, or a local file's content proves it:
MD5 or S3's own checksum, never size or dates), or downloads it, verifies it
(S3's full-object checksum, or the MD5 of its ETag), makes it durable (fsync,
atomic link, recorded in the ledger) and only then deletes exactly that object
from S3, in the form this server was probed to honour. Anything it cannot do
safely stays in S3 and is reported.

commands:
  drain    (the default) S3 prefix -> <local-base-path>/raw/, then delete from S3
  ingest   local files -> s3://bucket/<layer>/<origin>/<format>/<spec>/YYYY/MM/DD/
  history  what happened to a key, from the ledger in <local-base-path>/.s3drain/
  watch    drain each object seconds after it lands, from S3's notifications (SQS)
  events   S3 event notifications through SQS ('events setup': queue and bucket)

Run 's3drain COMMAND --help' for each command's options.
"""


DRAIN_EPILOG = """\
settings come from config/.env (or --env-file), then the environment, then
flags, the later winning. Names are case-insensitive:
  BUCKET_NAME, PATH_TO_SEARCH, LOCAL_BASE_PATH, RAW_DIR, PROCESSED_DIR,
  S3_ENDPOINT_URL, S3_ADDRESSING_STYLE, AWS_REGION, AWS_PROFILE,
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_CA_BUNDLE,
and S3DRAIN_<OPTION> for these options: AUDIT_LOG, WORKERS, DELETE_MODE,
REQUIRE_EXACT_DELETE, CONDITIONAL_DELETE (true/false), MULTIPART_THRESHOLD,
PART_SIZE, MAX_STREAMS, MIN_AGE, MAX_OBJECTS, MAX_BYTES, MAX_DELETE, SHARD,
METRICS_FILE, DRY_RUN, NO_DELETE, INCLUDE and EXCLUDE (comma-separated;
excludes checked first), LEDGER_RETENTION, MAX_ATTEMPTS, CONNECT_TIMEOUT,
READ_TIMEOUT. An unknown S3DRAIN_ name is an error.

examples:
  s3drain --bucket lake --prefix exports/2024/ --local-base-path /data/etl
  s3drain --env-file /etc/s3drain.env --dry-run --probe
  s3drain --env-file /etc/s3drain.env --include '*.csv' --min-age 15m -q
  s3drain --env-file /etc/s3drain.env --shard 0/4      # host 1 of 4
  s3drain history exports/2024/a.csv --local-base-path /data/etl

exit codes:
  0  every object handled          4  --max-delete would be exceeded
  1  some objects left in S3       5  run stopped early (disk full, S3 gone)
  2  usage or configuration error  70 internal error (a bug: see the log named)
  3  another run holds the lock    130 interrupted (Ctrl-C, SIGTERM)
A run told to stop (Ctrl-C, SIGTERM, a fatal error) exits within 30 s: objects
in flight finish or are cleaned up, and what is cut short the next run ends.
S3 unreachable (only connection failures, across all workers, for 10 s) stops
the run with exit 5; a shorter outage is ridden out.

state lives in <local-base-path>/.s3drain/: the lock, the ledger state.db (what
was delivered and deleted: see 's3drain history --help') and audit.jsonl, one
JSON line per object (key, etag, status, deleted, local_path, verified,
checksums, delete_guard). --json and the metrics file are described in
docs/output.md; scheduling (cron, systemd, Kubernetes, Airflow) in
docs/scheduling.md.
"""


def add_drain_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    drain = commands.add_parser(
        "drain",
        help="drain a prefix to a local folder (the default command)",
        description=DESCRIPTION.split("\n\ncommands:", maxsplit=1)[0],
        epilog=DRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_drain_options(drain)


def add_drain_options(drain: argparse.ArgumentParser) -> None:
    """Every option of a drain; `s3drain watch` takes them all too."""
    where = drain.add_argument_group("what to drain, and where")
    where.add_argument(
        "--prefix", help="key prefix to drain; '' for the whole bucket (PATH_TO_SEARCH)"
    )
    where.add_argument(
        "--local-base-path",
        metavar="DIR",
        help="local root; raw/, processed/ and .s3drain/ live here (LOCAL_BASE_PATH)",
    )
    where.add_argument("--raw-dir", metavar="DIR", help="where downloads land (default <base>/raw)")
    where.add_argument(
        "--processed-dir",
        metavar="DIR",
        help="where the ETL moves finished files (default <base>/processed)",
    )
    where.add_argument(
        "--match",
        choices=("size", "checksum"),
        help=argparse.SUPPRESS,  # kept so old cron lines still run; content always decides now
    )
    where.add_argument(
        "--ledger-retention",
        metavar="AGE",
        help="forget a delivery this long after its object left S3 (default 90d; "
        "S3DRAIN_LEDGER_RETENTION). The ledger is <base>/.s3drain/state.db",
    )
    where.add_argument(
        "--audit-log",
        metavar="FILE",
        help="JSON Lines audit log (default <base>/.s3drain/audit.jsonl)",
    )

    pick = drain.add_argument_group("which objects")
    pick.add_argument(
        "--include",
        dest="filters",
        action=FilterAction,
        const="include",
        metavar="GLOB",
        help="take keys whose path below the prefix's folder matches GLOB (repeatable)",
    )
    pick.add_argument(
        "--exclude",
        dest="filters",
        action=FilterAction,
        const="exclude",
        metavar="GLOB",
        help="leave keys matching GLOB (repeatable). Rules apply in the order given, first "
        "match decides; with any --include, unmatched keys are left. '*' stays in one folder, "
        "'**' crosses folders; a GLOB without '/' matches the name in any folder",
    )
    pick.add_argument(
        "--min-age",
        metavar="AGE",
        help="leave objects younger than AGE (90s, 15m, 2h, 1d): a producer may still be writing",
    )
    pick.add_argument("--max-objects", metavar="N", help="take at most N objects this run")
    pick.add_argument(
        "--max-bytes",
        metavar="SIZE",
        help="take objects until their listed sizes reach SIZE (500MiB, 10GB); the first "
        "object is always taken, however large",
    )
    pick.add_argument(
        "--shard",
        metavar="K/N",
        help="take only keys whose CRC32 (of the UTF-8 key) modulo N is K, 0-based: N hosts "
        "drain one prefix without coordination, each with its own --local-base-path",
    )

    safety = drain.add_argument_group("deleting")
    safety.add_argument(
        "--no-delete",
        action="store_true",
        default=None,
        help="download and verify only; delete nothing (a cautious first run)",
    )
    safety.add_argument(
        "--max-delete",
        metavar="N",
        help="if more than N objects would be deleted, delete none and exit 4",
    )
    safety.add_argument(
        "--delete-mode",
        choices=("auto", "batch", "single"),
        help="auto (default): the exact form this server was probed to honour -- DeleteObjects "
        "with each key's ETag, else DeleteObject + If-Match, else the verified VersionId in a "
        "versioned bucket, else a HEAD + If-Match just before each delete. batch or single "
        "force a form; one the server does not honour is refused",
    )
    safety.add_argument(
        "--require-exact-delete",
        action="store_const",
        const="true",
        help="exit 2 before anything changes when deletes cannot be tied to the verified "
        "object on this server (S3DRAIN_REQUIRE_EXACT_DELETE)",
    )
    safety.add_argument(
        "--probe",
        action="store_true",
        default=None,
        help="probe the server's conditional deletes again (the answer is cached for a day "
        "per endpoint and bucket in <base>/.s3drain/state.db)",
    )
    safety.add_argument(
        "--no-conditional-delete",
        dest="conditional_delete",
        action="store_const",
        const="false",
        help="delete without any condition (in a versioned bucket: by the verified VersionId); "
        "loses the overwrite check, and says so",
    )

    drain.add_argument(
        "--processes",
        metavar="N",
        help="fetch processes for objects below --multipart-threshold (default auto: one per "
        "usable core from three cores up, none on one or two; 0 fetches in the run's own "
        "process). Each takes a "
        "share of --workers; listing, the ledger, links and deletes stay in the run's process "
        "(S3DRAIN_PROCESSES)",
    )
    drain.add_argument(
        "--lanes",
        metavar="N",
        help="whole pipelines side by side, one process each, every one over its own hash "
        "share of the keys, into the same folders, ledger and audit log (default auto: from "
        "four usable cores up, one per core, up to 8, when the prefix's first listing page "
        "is full and its objects average below 256KiB; else 1). One interpreter runs Python "
        "on one core at a time; lanes give small objects the others. Not with --max-objects, "
        "--max-bytes, --max-delete or --shard, not in a dry run or `watch` (S3DRAIN_LANES)",
    )
    drain.add_argument(
        "--pin",
        choices=("auto", "off"),
        help="auto (default): with two usable cores and no fetch processes, keep the run's "
        "threads on one core while the objects it fetches average below 256KiB, the core "
        "other processes use least (checked every half second); threads handing Python's "
        "lock across cores cost more than the second core gives small objects. Larger "
        "objects get every core. off: never (S3DRAIN_PIN)",
    )

    speed = drain.add_argument_group("large objects")
    speed.add_argument(
        "--multipart-threshold",
        metavar="SIZE",
        help="objects this large may get more than one stream (default 16MiB)",
    )
    speed.add_argument(
        "--part-size",
        metavar="SIZE",
        help="the smallest range a stream takes (default 8MiB)",
    )
    speed.add_argument(
        "--max-streams",
        metavar="N",
        help="at most N streams (ranged GETs) per object (default: --workers; 1 never splits). "
        "Every object starts as one GET; while the run's measured rate keeps rising, a large "
        "object's remaining bytes are split into more streams on idle connections, and the "
        "level that paid carries over to the next objects. On a link that caps each "
        "connection this grows to many streams; on a server where a range costs as much as "
        "the whole object it stays at one",
    )

    drain.add_argument(
        "--metrics-file",
        metavar="FILE",
        help="write the run's figures in Prometheus text format here, atomically, for the "
        "node_exporter textfile collector (S3DRAIN_METRICS_FILE; not on --dry-run)",
    )
    add_s3_options(drain)
    add_output_options(drain)
