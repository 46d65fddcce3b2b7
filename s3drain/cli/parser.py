"""The top-level `s3drain` parser, gathering each command's own (`drain_args.py`,
`ingest_args.py`). Parsing only: running is `main.py`."""

from __future__ import annotations

import argparse

from s3drain.cli.drain_args import DESCRIPTION, add_drain_parser
from s3drain.cli.events_args import add_events_parser
from s3drain.cli.history_args import add_history_parser
from s3drain.cli.ingest_args import add_ingest_parser
from s3drain.cli.options import Parser
from s3drain.cli.watch_args import add_watch_parser
from s3drain.version import __version__

COMMANDS = ("drain", "ingest", "history", "watch", "events")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="s3drain",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"s3drain {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{drain,ingest,history,watch,events}")

    add_drain_parser(commands)
    add_ingest_parser(commands)
    add_history_parser(commands)
    add_watch_parser(commands)
    add_events_parser(commands)
    return parser


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


def with_default_command(argv: list[str]) -> list[str]:
    if argv and (argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["drain", *argv]


def parse(argv: list[str]) -> argparse.Namespace:
    """`drain` is the default command: `s3drain --bucket ...` is `s3drain drain --bucket ...`."""
    parser = build_parser()
    return parser.parse_args(_join_dash_values(parser, with_default_command(argv)))
