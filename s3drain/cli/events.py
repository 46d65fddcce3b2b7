"""`s3drain events setup`: settings in, one exit code out; the work is `events/setup.py`."""

from __future__ import annotations

from typing import Any, TextIO

from s3drain.config.sources import Sources
from s3drain.errors import ExitCode, S3DrainError
from s3drain.events.client import make_sqs_client
from s3drain.events.settings import load_setup_settings
from s3drain.events.setup import SetupResult, run_setup
from s3drain.output import dumps_json, mask
from s3drain.s3.client import make_client
from s3drain.s3.retry import RetryPolicy


def events_setup_command(sources: Sources, out: TextIO, err: TextIO) -> int:
    settings = load_setup_settings(sources)
    secrets = settings.s3.secrets()
    s3 = make_client(settings.s3)
    sqs = make_sqs_client(settings.s3, settings.sqs)
    try:
        result = run_setup(settings, sqs, s3, RetryPolicy(max_attempts=settings.s3.max_attempts))
    except S3DrainError as exc:
        err.write(mask(f"s3drain: error: {exc.message}\n", secrets))
        if exc.hint:
            err.write(mask(f"s3drain: hint: {exc.hint}\n", secrets))
        err.flush()
        return int(exc.exit_code)
    finally:
        s3.close()
        sqs.close()
    if settings.dry_run or settings.json_summary:
        out.write(mask(dumps_json(_as_json(result, dry_run=settings.dry_run)), secrets) + "\n")
    else:
        out.write(mask(_as_text(result), secrets))
    out.flush()
    return int(ExitCode.OK)


def _as_json(result: SetupResult, *, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "queue_url": result.queue_url,
        "queue_arn": result.queue_arn,
        "dead_letter_queue_url": result.dlq_url,
        "dead_letter_queue_arn": result.dlq_arn,
        "steps": [
            {"what": s.what, "action": s.action, "detail": s.detail, "apply": s.apply}
            for s in result.steps
        ],
    }


def _as_text(result: SetupResult) -> str:
    width = max(len(s.what) for s in result.steps)
    lines = [f"{s.what:<{width}}  {s.action:<9}  {s.detail}" for s in result.steps]
    lines.append(f"queue URL: {result.queue_url}")
    return "\n".join(lines) + "\n"
