"""`s3drain` and `python -m s3drain`: arguments in, one exit code out. Thin on purpose."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

from s3drain import __version__
from s3drain.config import (
    DEFAULT_ENV_FILE,
    DrainSettings,
    Sources,
    load_drain_settings,
    load_ingest_settings,
)
from s3drain.drain import run_drain
from s3drain.errors import ConfigError, ExitCode, S3DrainError
from s3drain.ingest import run_ingest_command
from s3drain.report import (
    RunInfo,
    Totals,
    dumps_json,
    mask,
    previous_success,
    prometheus_text,
    render_summary,
    result_line,
    summary_json,
    write_atomically,
)

COMMANDS = ("drain", "ingest")

DESCRIPTION = """\
Drain an S3 prefix into a local folder without ever losing an object.

For every object under the prefix, s3drain either deletes it from S3 because a
matching copy is already local (in the processed folder, or at its destination
from an interrupted run), or downloads it, verifies it (size, MD5 of the ETag,
S3's checksum), makes it durable (fsync, atomic link) and only then deletes
exactly that version from S3. Anything it cannot do safely stays in S3 and is
reported.

commands:
  drain    (the default) S3 prefix -> <local-base-path>/raw/, then delete from S3
  ingest   local files -> s3://bucket/<layer>/<origin>/<format>/<spec>/YYYY/MM/DD/

Run 's3drain drain --help' or 's3drain ingest --help' for each command's options.
"""

DRAIN_EPILOG = """\
settings come from config/.env (or --env-file), then the environment, then
flags, the later winning. Names are case-insensitive:
  BUCKET_NAME, PATH_TO_SEARCH, LOCAL_BASE_PATH, RAW_DIR, PROCESSED_DIR,
  S3_ENDPOINT_URL, S3_ADDRESSING_STYLE, AWS_REGION, AWS_PROFILE,
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_CA_BUNDLE,
and S3DRAIN_<OPTION> for these options: AUDIT_LOG, MATCH, WORKERS, DELETE_MODE,
CONDITIONAL_DELETE (true/false), MULTIPART_THRESHOLD, PART_SIZE, MIN_AGE,
MAX_OBJECTS, MAX_BYTES, MAX_DELETE, SHARD, METRICS_FILE, DRY_RUN, NO_DELETE,
INCLUDE and EXCLUDE (comma-separated; excludes checked first), MAX_ATTEMPTS,
CONNECT_TIMEOUT, READ_TIMEOUT. An unknown S3DRAIN_ name is an error.

examples:
  s3drain --bucket lake --prefix exports/2024/ --local-base-path /data/etl
  s3drain --env-file /etc/s3drain.env --dry-run
  s3drain --env-file /etc/s3drain.env --include '*.csv' --min-age 15m -q
  s3drain --env-file /etc/s3drain.env --shard 0/4      # host 1 of 4

exit codes:
  0  every object handled          3  another run holds the lock
  1  some objects left in S3       4  --max-delete would be exceeded
  2  usage or configuration error  5  run stopped early (disk full, S3 gone)
  130 interrupted (Ctrl-C, SIGTERM)

state lives in <local-base-path>/.s3drain/: the lock and audit.jsonl, one JSON
line per object (key, size, etag, status, deleted, local_path, verified).
--json and the metrics file are described in docs/output.md; scheduling (cron,
systemd, Kubernetes, Airflow) in docs/scheduling.md.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and a hint), not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            int(ExitCode.USAGE),
            f"s3drain: error: {message}\ns3drain: hint: see '{self.prog} --help'\n",
        )


def _join_dash_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--shard -1/2` and `--min-age -5m`: argparse reads a value starting with '-' as an
    option; glue it to its flag so the setting's own check can say what is wrong with it."""
    known: set[str] = set()
    takes_value: set[str] = set()
    for action in _all_actions(parser):
        known.update(action.option_strings)
        if action.option_strings and action.nargs != 0:
            takes_value.update(action.option_strings)
    out: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        following = argv[index + 1] if index + 1 < len(argv) else None
        if (
            token in takes_value
            and following is not None
            and following.startswith("-")
            and following.split("=", 1)[0] not in known
        ):
            out.append(f"{token}={following}")
            index += 2
            continue
        out.append(token)
        index += 1
    return out


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions += _all_actions(sub)
    return actions


class _FilterAction(argparse.Action):
    """--include and --exclude share one ordered list: the first matching rule decides."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        rules = list(getattr(namespace, "filters", None) or [])
        rules.append((self.const, str(values)))
        namespace.filters = rules


def _add_s3_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("S3 connection")
    group.add_argument("--bucket", help="bucket name, no s3:// (BUCKET_NAME)")
    group.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="for MinIO and other S3-compatible servers (S3_ENDPOINT_URL)",
    )
    group.add_argument("--region", help="AWS region (AWS_REGION)")
    group.add_argument("--profile", help="AWS profile from ~/.aws/config (AWS_PROFILE)")
    group.add_argument(
        "--addressing-style",
        choices=("auto", "path", "virtual"),
        help="path for most self-hosted servers (default auto)",
    )
    group.add_argument(
        "--max-attempts",
        metavar="N",
        help="tries per S3 step before it counts as failed (default 6)",
    )
    group.add_argument("--connect-timeout", metavar="SECONDS", help="default 10")
    group.add_argument("--read-timeout", metavar="SECONDS", help="default 60")
    group.add_argument(
        "--workers", metavar="N", help="parallel transfers (default 16 for drain, 8 for ingest)"
    )
    group.add_argument(
        "--env-file", metavar="FILE", help=f"settings file (default {DEFAULT_ENV_FILE}, if present)"
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    loud = group.add_mutually_exclusive_group()
    loud.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        help="one line per object (-vv: each retry too)",
    )
    loud.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=-1,
        help="errors only: no progress, no summary",
    )
    group.add_argument(
        "--json",
        dest="json_summary",
        action="store_true",
        default=None,
        help="print the summary as one JSON object on stdout (schema: docs/output.md)",
    )
    group.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="show what would happen to each object (on stdout; on stderr with --json) and "
        "the totals; change nothing in S3 or on disk",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="s3drain",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"s3drain {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{drain,ingest}")

    drain = commands.add_parser(
        "drain",
        help="drain a prefix to a local folder (the default command)",
        description=DESCRIPTION.split("\n\ncommands:", maxsplit=1)[0],
        epilog=DRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        help="how a local file counts as the same object: size (default), or MD5 against "
        "a single-part ETag",
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
        action=_FilterAction,
        const="include",
        metavar="GLOB",
        help="take keys whose path below the prefix's folder matches GLOB (repeatable)",
    )
    pick.add_argument(
        "--exclude",
        dest="filters",
        action=_FilterAction,
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
        choices=("batch", "single"),
        help="batch: DeleteObjects, 1000 keys a request (default); single: DeleteObject + If-Match",
    )
    safety.add_argument(
        "--no-conditional-delete",
        dest="conditional_delete",
        action="store_const",
        const="false",
        help="for servers that reject If-Match/ETag on delete; loses the overwrite check",
    )

    speed = drain.add_argument_group("large objects")
    speed.add_argument(
        "--multipart-threshold",
        metavar="SIZE",
        help="objects this large may be fetched as parallel ranges (default 16MiB)",
    )
    speed.add_argument(
        "--part-size",
        metavar="SIZE",
        help="the smallest range (default 8MiB). A large object is split only into as many "
        "ranges as there are idle workers: many large files stream whole, side by side; a "
        "lone huge one fans out",
    )

    drain.add_argument(
        "--metrics-file",
        metavar="FILE",
        help="write the run's figures in Prometheus text format here, atomically, for the "
        "node_exporter textfile collector (S3DRAIN_METRICS_FILE; not on --dry-run)",
    )
    _add_s3_options(drain)
    _add_output_options(drain)

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
            "exit codes: 0 all uploaded or already there, 1 some files failed or were\n"
            "refused (nothing of them is left in S3), 2 usage or configuration error\n"
            "(including a bucket owned by someone else), 130 interrupted."
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
        "--multipart-threshold",
        metavar="SIZE",
        help="files this large use multipart upload (default 64MiB)",
    )
    ingest.add_argument(
        "--part-size", metavar="SIZE", help="multipart part size (default 16MiB, at least 5MiB)"
    )
    _add_s3_options(ingest)
    _add_output_options(ingest)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    if argv and (argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["drain", *argv]


def _error(err: TextIO, error: S3DrainError, secrets: Sequence[str] = ()) -> None:
    err.write(mask(f"s3drain: error: {error.message}\n", secrets))
    if error.hint:
        err.write(mask(f"s3drain: hint: {error.hint}\n", secrets))
    err.flush()


class _Stopper:
    """First Ctrl-C/SIGTERM: stop taking objects, finish the ones in flight, write the summary.
    Second: leave at once (temp files are swept by the next run, nothing is half-deleted)."""

    def __init__(self, err: TextIO) -> None:
        self.event = threading.Event()
        self._err = err

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            os._exit(int(ExitCode.INTERRUPTED))
        self.event.set()
        self._err.write(
            "\ns3drain: stopping: finishing objects in flight (again to quit at once)\n"
        )
        self._err.flush()

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self)
            signal.signal(signal.SIGTERM, self)


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    words = _with_default_command(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(_join_dash_values(parser, words))
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "env_file", "paths")}
    env_file = Path(args.env_file) if args.env_file else DEFAULT_ENV_FILE
    try:
        sources = Sources(flags, os.environ, env_file, env_file_explicit=bool(args.env_file))
        if args.command == "ingest":
            ingest_settings = load_ingest_settings(sources, args.paths)
        else:
            settings = load_drain_settings(sources)
    except S3DrainError as exc:
        _error(err, exc)
        return int(exc.exit_code)
    if args.command == "ingest":
        stopper = _Stopper(err)
        stopper.install()
        return run_ingest_command(ingest_settings, out=out, err=err, stop=stopper.event)
    return _drain(settings, out, err)


def _drain(settings: DrainSettings, out: TextIO, err: TextIO) -> int:
    if settings.verbosity >= 0 and err.isatty() and not settings.progress:
        settings = replace(settings, progress=True)
    secrets = settings.s3.secrets()
    try:
        check_writable(settings.metrics_file, dry_run=settings.dry_run)
    except S3DrainError as exc:
        _error(err, exc, secrets)
        return int(exc.exit_code)
    stopper = _Stopper(err)
    stopper.install()
    result = run_drain(settings, out=out, err=err, stop=stopper.event)
    if not result.started:  # a check before anything changed: one line, like a config error
        _error(err, S3DrainError(result.info.error or "stopped", result.hint), secrets)
    if result.internal_error:
        err.write(mask(result.internal_error, secrets))
        err.write("s3drain: this is a bug in s3drain; please report it with the lines above\n")
    if settings.json_summary:
        out.write(mask(dumps_json(summary_json(result.totals, result.info)), secrets) + "\n")
    elif result.started and settings.verbosity >= 0:
        out.write(mask(render_summary(result.totals, result.info), secrets) + "\n")
    elif result.started and result.exit_code != ExitCode.OK:  # -q: one line when it matters
        err.write(mask(f"s3drain: {result_line(result.totals, result.info)}\n", secrets))
    out.flush()
    if not settings.dry_run:  # a dry run changes nothing, metrics included
        _write_metrics(settings, result.totals, result.info, err)
    return int(result.exit_code)


def check_writable(path: Path | None, *, dry_run: bool) -> None:
    """A typo in --metrics-file is a usage error before the run, not a warning after it."""
    if path is None or dry_run:
        return
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write the metrics file {path}: {folder} is not a writable folder",
            hint="check --metrics-file / S3DRAIN_METRICS_FILE",
        )


def _write_metrics(settings: DrainSettings, totals: Totals, info: RunInfo, err: TextIO) -> None:
    if settings.metrics_file is None:
        return
    text = prometheus_text(totals, info, time.time(), previous_success(settings.metrics_file))
    try:
        write_atomically(settings.metrics_file, text)
    except OSError as exc:
        err.write(f"s3drain: warning: cannot write {settings.metrics_file}: {exc.strerror}\n")
