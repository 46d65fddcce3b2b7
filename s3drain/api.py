"""The Python surface, for a task in Airflow, Dagster or a script: build settings with the same
names, sources and checks as the command line, run, and read the result. Nothing is printed
unless `out`/`err` are given; the result carries the counts, the exit code and the error.

    import s3drain

    settings = s3drain.drain_settings(
        bucket="lake", prefix="exports/2024/", local_base_path="/data/etl", workers=8
    )
    result = s3drain.run_drain(settings)
    if result.exit_code != s3drain.ExitCode.OK:
        raise RuntimeError(result.info.error or f"{result.totals.left_in_s3} objects left in S3")
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from s3drain.config.sources import Sources
from s3drain.drain.run import DrainResult
from s3drain.drain.run import run_drain as _run_drain
from s3drain.drain.settings import DrainSettings, load_drain_settings
from s3drain.ingest.run import IngestResult
from s3drain.ingest.run import run_ingest as _run_ingest
from s3drain.ingest.settings import IngestSettings, load_ingest_settings

Option = str | int | float | bool | Path | Sequence[str] | None


def _flags(options: Mapping[str, Option]) -> dict[str, object]:
    """Options as the command line would hand them over: text, so every value goes through the
    same parsing and range checks as a flag or an environment variable."""
    flags: dict[str, object] = {}
    rules: list[tuple[str, str]] = []
    for name, value in options.items():
        if value is None:
            continue
        if name in ("include", "exclude") and isinstance(value, Sequence | Path):
            patterns = [value] if isinstance(value, str | Path) else value
            rules += [(name, str(pattern)) for pattern in patterns]
        elif isinstance(value, bool):
            flags[name] = "true" if value else "false"
        elif isinstance(value, str | int | float | Path):
            flags[name] = str(value)
        else:
            raise TypeError(f"{name}: expected a single value, got {type(value).__name__}")
    if rules:
        # Excludes first, as with S3DRAIN_EXCLUDE/S3DRAIN_INCLUDE: one order, no surprises.
        flags["filters"] = sorted(rules, key=lambda rule: rule[0] != "exclude")
    return flags


def _sources(
    options: Mapping[str, Option], env_file: str | Path | None, environ: Mapping[str, str] | None
) -> Sources:
    return Sources(
        _flags(options),
        os.environ if environ is None else environ,
        Path(env_file) if env_file is not None else None,
        env_file_explicit=env_file is not None,
    )


def drain_settings(
    *,
    env_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **options: Option,
) -> DrainSettings:
    """Settings for `run_drain`, from keyword options named like the command-line flags
    (`bucket`, `prefix`, `local_base_path`, `workers`, `dry_run`, `include=[...]`, ...), then
    `environ` (default: the process environment), then `env_file` (only when given). Raises
    `ConfigError` with the same one-line message the command line prints."""
    return load_drain_settings(_sources(options, env_file, environ))


def ingest_settings(
    paths: Sequence[str | Path],
    *,
    env_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **options: Option,
) -> IngestSettings:
    """Settings for `run_ingest`: the files or folders to upload, and keyword options named like
    `s3drain ingest`'s flags (`bucket`, `layer`, `origin`, `spec`, `format`, `date`, ...)."""
    return load_ingest_settings(_sources(options, env_file, environ), [str(p) for p in paths])


def run_drain(
    settings: DrainSettings,
    *,
    stop: threading.Event | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> DrainResult:
    """One drain run. Set `stop` to end it early the way Ctrl-C does (objects in flight finish
    or are cleaned up; verified ones are still deleted)."""
    return _run_drain(
        settings, out=out or io.StringIO(), err=err or io.StringIO(), stop=stop or threading.Event()
    )


def run_ingest(
    settings: IngestSettings,
    *,
    stop: threading.Event | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> IngestResult:
    """One ingest run. Raises `S3DrainError` when it cannot start (a path that does not exist,
    a bucket that is not ours); failures of single files are in the result."""
    return _run_ingest(settings, out=out or io.StringIO(), err=err or io.StringIO(), stop=stop)
