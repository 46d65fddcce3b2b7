"""`s3drain` and `python -m s3drain`: arguments in, one exit code out. Thin on purpose."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

from s3drain.cli.parser import parse
from s3drain.cli.shared import Stopper, check_writable, report_error
from s3drain.collector import tune_collector
from s3drain.config.sources import DEFAULT_ENV_FILE, Sources
from s3drain.drain.metrics import previous_success, prometheus_text, write_atomically
from s3drain.drain.run import run_drain
from s3drain.drain.settings import DrainSettings, load_drain_settings
from s3drain.drain.summary import RunInfo, Totals, render_summary, result_line, summary_json
from s3drain.drain.watchdog import STOP_GRACE_SECONDS
from s3drain.errors import ExitCode, S3DrainError
from s3drain.output import SafeStream, dumps_json, mask

if TYPE_CHECKING:
    from s3drain.ingest.settings import IngestSettings


def run_program() -> int:
    """The `s3drain` console script and `python -m s3drain`: this process is s3drain's alone."""
    tune_collector()
    return main()


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    # A closed pipe or a full disk under stdout or stderr must not end or falsify the run.
    out = cast(TextIO, SafeStream(out or sys.stdout))
    err = cast(TextIO, SafeStream(err or sys.stderr))
    args = parse(list(sys.argv[1:] if argv is None else argv))
    flags = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "events_command", "env_file", "paths", "key")
    }
    env_file = Path(args.env_file) if args.env_file else DEFAULT_ENV_FILE
    try:
        sources = Sources(flags, os.environ, env_file, env_file_explicit=bool(args.env_file))
        # Each command imports its own half: a drain (the command cron runs most) does not
        # pay for the others at start-up.
        if args.command == "history":
            from s3drain.cli.history import history_command  # noqa: PLC0415

            return history_command(sources, args.key, out)
        if args.command == "watch":
            from s3drain.cli.watch import watch_command  # noqa: PLC0415

            return watch_command(sources, out, err)
        if args.command == "events":
            from s3drain.cli.events import events_setup_command  # noqa: PLC0415

            return events_setup_command(sources, out, err)
        if args.command == "ingest":
            from s3drain.ingest.settings import load_ingest_settings  # noqa: PLC0415

            ingest_settings = load_ingest_settings(sources, args.paths)
        else:
            settings = load_drain_settings(sources)
    except S3DrainError as exc:
        report_error(err, exc)
        return int(exc.exit_code)
    if args.command == "ingest":
        stopper = Stopper(err)
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
        report_error(err, exc, secrets)
        return int(exc.exit_code)
    stopper = Stopper(err)
    stopper.install()

    def overrun(code: ExitCode) -> None:
        err.write(
            f"s3drain: error: the run did not end within {STOP_GRACE_SECONDS:.0f} s of "
            "stopping; exiting now (objects in flight stay in S3; the next run finishes them)\n"
        )
        err.flush()
        os._exit(int(code))

    result = run_drain(
        settings, out=out, err=err, stop=stopper.event, on_overrun=overrun, own_process=True
    )
    if not result.started or result.exit_code is ExitCode.INTERNAL:
        # One line (and a hint), like a configuration error; a bug's traceback is in the file
        # the line names.
        report_error(err, S3DrainError(result.info.error or "stopped", result.hint), secrets)
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


def _write_metrics(settings: DrainSettings, totals: Totals, info: RunInfo, err: TextIO) -> None:
    if settings.metrics_file is None:
        return
    text = prometheus_text(totals, info, time.time(), previous_success(settings.metrics_file))
    try:
        write_atomically(settings.metrics_file, text)
    except OSError as exc:
        err.write(f"s3drain: warning: cannot write {settings.metrics_file}: {exc.strerror}\n")


def run_ingest_command(
    settings: IngestSettings, *, out: TextIO, err: TextIO, stop: threading.Event | None = None
) -> int:
    from s3drain.ingest.plan import today_utc  # noqa: PLC0415 - see main()
    from s3drain.ingest.run import IngestResult, run_ingest  # noqa: PLC0415
    from s3drain.ingest.summary import render_summary as render_ingest_summary  # noqa: PLC0415
    from s3drain.ingest.summary import summary_json as ingest_summary_json  # noqa: PLC0415

    secrets = settings.s3.secrets()
    try:
        result = run_ingest(settings, out=out, err=err, stop=stop)
    except S3DrainError as exc:
        err.write(mask(f"s3drain: error: {exc.message}\n", secrets))
        if exc.hint:
            err.write(mask(f"s3drain: hint: {exc.hint}\n", secrets))
        if settings.json_summary:
            empty = IngestResult(exc.exit_code, settings.date or today_utc(), (), (), 0.0)
            out.write(
                mask(dumps_json(ingest_summary_json(settings, empty, exc.message)), secrets) + "\n"
            )
        return int(exc.exit_code)
    if settings.json_summary:
        out.write(mask(dumps_json(ingest_summary_json(settings, result)), secrets) + "\n")
    elif settings.verbosity >= 0:
        out.write(mask(render_ingest_summary(settings, result), secrets) + "\n")
    out.flush()
    return int(result.exit_code)
