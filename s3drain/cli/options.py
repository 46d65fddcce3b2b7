"""Argument groups and actions every command shares: the S3 connection, output, --include and
--exclude's ordered list, and a parser whose usage errors are one line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from s3drain.config.sources import DEFAULT_ENV_FILE
from s3drain.errors import ExitCode


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and a hint), not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            int(ExitCode.USAGE),
            f"s3drain: error: {message}\ns3drain: hint: see '{self.prog} --help'\n",
        )


class FilterAction(argparse.Action):
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


def add_s3_options(parser: argparse.ArgumentParser) -> None:
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
        "--workers",
        metavar="N",
        help="objects in flight at once (default 64 for drain, 8 for ingest)",
    )
    group.add_argument(
        "--env-file", metavar="FILE", help=f"settings file (default {DEFAULT_ENV_FILE}, if present)"
    )


def add_output_options(parser: argparse.ArgumentParser) -> None:
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
