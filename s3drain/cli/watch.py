"""`s3drain watch`: settings in, one exit code out; the work is `watch/run.py`."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import TextIO

from s3drain.cli.shared import Stopper, check_writable, report_error
from s3drain.config.sources import Sources
from s3drain.drain.metrics import previous_success, prometheus_text, write_atomically
from s3drain.drain.summary import render_summary, result_line, summary_json
from s3drain.drain.watchdog import STOP_GRACE_SECONDS
from s3drain.errors import ExitCode, S3DrainError
from s3drain.output import dumps_json, mask
from s3drain.watch import report
from s3drain.watch.run import run_watch
from s3drain.watch.settings import load_watch_settings


def watch_command(sources: Sources, out: TextIO, err: TextIO) -> int:
    try:
        settings = load_watch_settings(sources)
        check_writable(settings.drain.metrics_file, dry_run=False)
    except S3DrainError as exc:
        report_error(err, exc)
        return int(exc.exit_code)
    drain = settings.drain
    if drain.verbosity >= 0 and err.isatty() and not drain.progress:
        settings = replace(settings, drain=replace(drain, progress=True))
        drain = settings.drain
    secrets = drain.s3.secrets()
    stopper = Stopper(err)
    stopper.install()
    metrics_file = drain.metrics_file

    def overrun(code: ExitCode) -> None:
        err.write(
            f"s3drain: error: the watcher did not end within {STOP_GRACE_SECONDS:.0f} s of "
            "stopping; exiting now (objects in flight stay in S3, their messages come back)\n"
        )
        err.flush()
        os._exit(int(code))

    def write_metrics(text: str) -> None:
        if metrics_file is None:
            return
        try:
            write_atomically(metrics_file, text)
        except OSError as exc:
            err.write(f"s3drain: warning: cannot write {metrics_file}: {exc.strerror}\n")

    result = run_watch(
        settings,
        out=out,
        err=err,
        stop=stopper.event,
        on_overrun=overrun,
        write_metrics=write_metrics,
        own_process=True,
    )
    run, figures, counters = result.drain, result.figures, result.inbox
    if not run.started or run.exit_code is ExitCode.INTERNAL:
        report_error(err, S3DrainError(run.info.error or "stopped", run.hint), secrets)
    if drain.json_summary:
        document = summary_json(run.totals, run.info)
        document["watch"] = report.summary_json(figures, counters)
        out.write(mask(dumps_json(document), secrets) + "\n")
    elif run.started and drain.verbosity >= 0:
        text = render_summary(run.totals, run.info)
        head, _, last = text.rpartition("\n")
        text = f"{head}\n{report.summary_lines(figures, counters)}\n{last}"
        out.write(mask(text, secrets) + "\n")
    elif run.started and run.exit_code != ExitCode.OK:
        err.write(mask(f"s3drain: {result_line(run.totals, run.info)}\n", secrets))
    out.flush()
    if run.started and metrics_file is not None:
        text = prometheus_text(run.totals, run.info, time.time(), previous_success(metrics_file))
        write_metrics(
            text
            + report.metrics_text(
                figures, counters, bucket=drain.bucket, prefix=drain.prefix, now=time.time()
            )
        )
    return int(run.exit_code)
