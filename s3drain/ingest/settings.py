"""The ingest's settings: one frozen `IngestSettings`, validated once."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from s3drain.config.s3 import S3Settings, load_s3_settings
from s3drain.config.sources import (
    MiB,
    Sources,
    boolean,
    bucket_name,
    int_in,
    optional,
    required,
    size_in,
)
from s3drain.errors import ConfigError
from s3drain.local.paths import NAME_MAX, refusal_for
from s3drain.output import printable


@dataclass(frozen=True)
class IngestSettings:
    s3: S3Settings
    bucket: str
    paths: tuple[Path, ...]
    layer: str
    origin: str
    spec: str
    format: str | None
    date: datetime.date | None  # None: today in UTC, taken once when the run starts
    workers: int = 8
    multipart_threshold: int = 64 * MiB
    part_size: int = 16 * MiB
    dry_run: bool = False
    overwrite: bool = False  # replace a different object at a key (else: conflict, kept)
    verbosity: int = 0
    json_summary: bool = False


_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def _ingest_date(text: str) -> datetime.date:
    # Strictly YYYY-MM-DD: date.fromisoformat also takes 20220502 and 2022-W18-1, and a key
    # written under a surprising date is hard to find again.
    match = _ISO_DATE.match(text.strip())
    if match is not None:
        year, month, day = (int(part) for part in match.groups())
        try:
            return datetime.date(year, month, day)
        except ValueError:
            pass
    raise ConfigError(
        f"date {text!r} (from --date) is not a calendar date in the form YYYY-MM-DD, "
        "for example 2022-05-02"
    )


def load_ingest_settings(sources: Sources, paths: Sequence[str]) -> IngestSettings:
    bucket = bucket_name(required(sources, "bucket", "bucket"))
    workers = optional(sources, "workers", int_in(1, 256, "workers"), 8)
    layer = required(sources, "layer", "layer")
    origin = required(sources, "origin", "origin")
    spec = required(sources, "spec", "spec")
    fmt = optional(sources, "format", str, None)
    for label, part in (("layer", layer), ("origin", origin), ("spec", spec), ("format", fmt)):
        if part is None:
            continue
        why = "it contains '/'" if "/" in part else refusal_for(part, NAME_MAX)
        if why is None and part != part.strip():
            why = "it starts or ends with a space"
        if why is not None:
            raise ConfigError(
                f"{label} {printable(part)!r} cannot be a key segment the drain brings back "
                f"({why}): use one plain name such as Raw, Local or Movies"
            )
    if not paths:
        raise ConfigError("no files to ingest: name one or more files or folders")
    date = sources.flags.get("date")
    return IngestSettings(
        s3=load_s3_settings(sources, workers),
        bucket=bucket,
        paths=tuple(Path(p) for p in paths),
        layer=layer,
        origin=origin,
        spec=spec,
        format=fmt,
        date=None if date is None else _ingest_date(str(date)),
        workers=workers,
        multipart_threshold=optional(
            sources, "multipart_threshold", size_in(5 * MiB, 5 * 1024**3), 64 * MiB
        ),
        part_size=optional(sources, "part_size", size_in(5 * MiB, 5 * 1024 * MiB), 16 * MiB),
        dry_run=optional(sources, "dry_run", boolean, False),
        overwrite=optional(sources, "overwrite", boolean, False),
        verbosity=int(sources.flags.get("verbosity") or 0),  # type: ignore[call-overload]
        json_summary=bool(sources.flags.get("json_summary")),
    )
