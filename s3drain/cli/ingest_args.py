"""`s3drain ingest`'s arguments and help."""

from __future__ import annotations

import argparse

from s3drain.cli.options import Parser, add_output_options, add_s3_options


def add_ingest_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    ingest = commands.add_parser(
        "ingest",
        help="upload local files into the Raw-zone key layout",
        description=(
            "Upload files, or every file in a folder and its sub-folders, to\n"
            "  s3://BUCKET/<layer>/<origin>/<format>/<spec>/YYYY/MM/DD/<file>\n"
            "creating the bucket if it is missing. Each upload carries a CRC32 that S3\n"
            "checks; an identical object already at the key is skipped. Only the file's\n"
            "name goes into the key: two files of one name (and format) are both refused.\n"
            "Folder walks leave out hidden files and folders and symlinked folders."
        ),
        epilog=(
            "example:\n"
            "  s3drain ingest data/movies.csv --bucket lake --layer Raw --origin Local \\\n"
            "      --spec Movies\n"
            "  -> s3://lake/Raw/Local/CSV/Movies/2022/05/02/movies.csv\n\n"
            "--date defaults to today in UTC, taken once at the start of the run; fix it\n"
            "for re-runs. --dry-run prints the keys without contacting S3.\n\n"
            "A different object already at a key is left alone and reported as a\n"
            "conflict, unless --overwrite; uploads are conditional (If-None-Match: *),\n"
            "so an object that appears meanwhile is not replaced either.\n\n"
            "exit codes: 0 all uploaded or already there, 1 some files failed, were\n"
            "refused or met a different object (nothing of them is left in S3), 2 usage\n"
            "or configuration error (including a bucket owned by someone else),\n"
            "130 interrupted."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ingest.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to upload")
    ingest.add_argument("--layer", help="first key segment, e.g. Raw")
    ingest.add_argument("--origin", help="e.g. Local")
    ingest.add_argument("--spec", help="dataset name, e.g. Movies")
    ingest.add_argument("--format", help="default: the file's extension, upper-cased (CSV)")
    ingest.add_argument(
        "--date", metavar="YYYY-MM-DD", help="date segments of the key (default: today, UTC)"
    )
    ingest.add_argument(
        "--overwrite",
        action="store_const",
        const="true",
        help="replace a different object already at a key (default: leave it, report a "
        "conflict, exit 1; S3DRAIN_OVERWRITE)",
    )
    ingest.add_argument(
        "--multipart-threshold",
        metavar="SIZE",
        help="files this large use multipart upload (default 64MiB)",
    )
    ingest.add_argument(
        "--part-size", metavar="SIZE", help="multipart part size (default 16MiB, at least 5MiB)"
    )
    add_s3_options(ingest)
    add_output_options(ingest)
