"""The drain's settings: one frozen `DrainSettings`, validated once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from s3drain.config.s3 import S3Settings, load_s3_settings
from s3drain.config.sources import (
    MiB,
    Sources,
    boolean,
    bucket_name,
    choice,
    folder,
    int_in,
    optional,
    positive_duration,
    required,
    size_in,
)
from s3drain.drain.filters import FilterRule, Shard, compile_rule, parse_shard
from s3drain.errors import ConfigError

MatchMode = Literal["size", "checksum"]
# Objects in flight: a link's round trip caps a drain at workers / RTT objects per second (16
# at S3's 25 ms: 640/s), and a small object's wait costs nothing but a parked thread here and
# a connection in a fetch process.
DEFAULT_WORKERS = 64
DAY = 86400.0
DeleteMode = Literal["auto", "batch", "single"]


@dataclass(frozen=True)
class DrainSettings:
    s3: S3Settings
    bucket: str
    prefix: str
    local_base_path: Path
    raw_dir: Path
    processed_dir: Path
    state_dir: Path
    audit_log: Path
    match: MatchMode | None = None  # no longer used: content always decides (warned about)
    workers: int = 64
    processes: int | None = None  # fetch processes for small objects; None: `fetch_processes`
    lanes: int | None = None  # whole pipelines over shares of the keys; None: auto (`lanes.py`)
    pin: bool = True  # on one core while objects are small (`core_pin.py`); off: never
    delete_mode: DeleteMode = "auto"  # auto: the exact form the server was probed to honour
    require_exact_delete: bool = False
    probe: bool = False  # probe the server again, ignoring a cached answer
    conditional_delete: bool = True
    delete_batch_size: int = 1000
    # A timer flush costs one request: at 5 s that stays within 1% of requests down to ~25 small
    # objects/s (2 s broke the 1.01 target on a loaded CI host), and a verified object still
    # waits only seconds for its delete.
    delete_flush_seconds: float = 5.0
    ledger_retention: float = 90 * 86400.0  # seconds a deleted object's row is kept
    multipart_threshold: int = 16 * MiB
    part_size: int = 8 * MiB
    max_streams: int = 16  # streams per large object, at most (the run learns how many pay)
    dry_run: bool = False
    no_delete: bool = False
    rules: tuple[FilterRule, ...] = ()
    min_age: float | None = None
    max_objects: int | None = None
    max_bytes: int | None = None
    max_delete: int | None = None
    shard: Shard | None = None
    verbosity: int = 0  # -1 quiet, 0 normal, 1 one line per object, 2 debug
    json_summary: bool = False
    metrics_file: Path | None = None
    progress: bool = False


def load_drain_settings(sources: Sources) -> DrainSettings:
    bucket = bucket_name(required(sources, "bucket", "bucket"))
    prefix_value = sources.get("prefix")
    if prefix_value is None:
        raise ConfigError(
            f"prefix is not set: {sources.describe('prefix')} "
            "(use --prefix '' for the whole bucket)"
        )
    prefix = str(prefix_value.raw)
    base_text = required(sources, "local_base_path", "local base path")
    base = Path(os.path.expanduser(base_text)).absolute()

    workers = optional(sources, "workers", int_in(1, 256, "workers"), DEFAULT_WORKERS)
    raw_dir = folder(sources, "raw_dir", base / "raw")
    processed_dir = folder(sources, "processed_dir", base / "processed")
    state_dir = base / ".s3drain"
    _check_folders(raw_dir, processed_dir, state_dir)
    audit_log = folder(sources, "audit_log", state_dir / "audit.jsonl")

    part_size = optional(sources, "part_size", size_in(MiB, 5 * 1024 * MiB), 8 * MiB)
    threshold = optional(sources, "multipart_threshold", size_in(MiB, 5 * 1024**4), 16 * MiB)
    verbosity = int(sources.flags.get("verbosity") or 0)  # type: ignore[call-overload]
    metrics = sources.get("metrics_file")
    settings = DrainSettings(
        s3=load_s3_settings(sources, workers),
        bucket=bucket,
        prefix=prefix,
        local_base_path=base,
        raw_dir=raw_dir,
        processed_dir=processed_dir,
        state_dir=state_dir,
        audit_log=audit_log,
        match=cast(MatchMode | None, optional(sources, "match", choice("size", "checksum"), None)),
        ledger_retention=optional(sources, "ledger_retention", positive_duration, 90 * DAY),
        workers=workers,
        processes=optional(sources, "processes", processes_setting, None),
        lanes=optional(sources, "lanes", lanes_setting, None),
        pin=optional(sources, "pin", choice("auto", "off"), "auto") == "auto",
        delete_mode=cast(
            DeleteMode, optional(sources, "delete_mode", choice("auto", "batch", "single"), "auto")
        ),
        conditional_delete=optional(sources, "conditional_delete", boolean, True),
        require_exact_delete=optional(sources, "require_exact_delete", boolean, False),
        probe=bool(sources.flags.get("probe")),
        multipart_threshold=threshold,
        part_size=part_size,
        max_streams=optional(sources, "max_streams", int_in(1, 256, "max streams"), workers),
        dry_run=optional(sources, "dry_run", boolean, False),
        no_delete=optional(sources, "no_delete", boolean, False),
        rules=_filter_rules(sources),
        min_age=optional(sources, "min_age", positive_duration, None),
        max_objects=optional(sources, "max_objects", int_in(1, 10**12, "max objects"), None),
        max_bytes=optional(sources, "max_bytes", size_in(1, 10**18), None),
        max_delete=optional(sources, "max_delete", int_in(0, 10**12, "max delete"), None),
        shard=optional(sources, "shard", parse_shard, None),
        verbosity=verbosity,
        json_summary=bool(sources.flags.get("json_summary")),
        metrics_file=None
        if metrics is None
        else Path(os.path.expanduser(str(metrics.raw))).absolute(),
        progress=bool(sources.flags.get("progress")),
    )
    _check_lanes(settings)
    return settings


def _check_lanes(settings: DrainSettings) -> None:
    """Limits and a shard count across the whole run; lanes would each count their own."""
    if settings.lanes is None or settings.lanes == 1:
        return
    clashing = [
        flag
        for flag, value in (
            ("--max-objects", settings.max_objects),
            ("--max-bytes", settings.max_bytes),
            ("--max-delete", settings.max_delete),
            ("--shard", settings.shard),
        )
        if value is not None
    ]
    if clashing:
        raise ConfigError(
            f"--lanes {settings.lanes} cannot be combined with {', '.join(clashing)}: "
            "those count across the whole run, which a run keeps in one process; "
            "use --lanes auto (one process with these) or --lanes 1"
        )


def _filter_rules(sources: Sources) -> tuple[FilterRule, ...]:
    """--include/--exclude in command-line order (the first match decides). From the
    environment, S3DRAIN_EXCLUDE and S3DRAIN_INCLUDE hold comma-separated patterns with no
    order between them, so there the excludes are checked first. Flags replace both."""
    flagged = sources.flags.get("filters")
    if isinstance(flagged, list) and flagged:
        pairs: list[tuple[str, str, str]] = [
            (kind, pattern, f"--{kind}") for kind, pattern in flagged
        ]
    else:
        pairs = []
        for kind in ("exclude", "include"):
            value = sources.get(kind)
            if value is not None:
                pairs += [(kind, p.strip(), value.origin) for p in str(value.raw).split(",")]
    rules = []
    for kind, pattern, origin in pairs:
        try:
            rules.append(compile_rule(pattern, include=kind == "include"))
        except ValueError as exc:
            raise ConfigError(f"{kind} pattern: {exc} (from {origin})") from None
    return tuple(rules)


def _check_folders(raw_dir: Path, processed_dir: Path, state_dir: Path) -> None:
    """Keys must never be able to land in the processed folder or in s3drain's own state."""
    # Resolved, so `raw/../processed` and symlinks cannot disguise one folder as another.
    named = {
        "raw folder": Path(os.path.realpath(raw_dir)),
        "processed folder": Path(os.path.realpath(processed_dir)),
        "state folder": Path(os.path.realpath(state_dir)),
    }
    for name_a, path_a in named.items():
        for name_b, path_b in named.items():
            if name_a != name_b and (path_a == path_b or path_b.is_relative_to(path_a)):
                raise ConfigError(
                    f"the {name_a} {path_a} contains the {name_b} {path_b}: "
                    "give them separate folders (the defaults are <base>/raw and <base>/processed)"
                )


def processes_setting(text: str) -> int | None:
    """`auto` (see `fetch_processes`) or 0..64 (0: fetch in the run's own process)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int_in(0, 64, "processes")(text)
    except ValueError as exc:
        raise ValueError(f"{exc} (or auto)") from None


def lanes_setting(text: str) -> int | None:
    """`auto` (see `drain/lanes.py`) or 1..64 (1: the run is one process)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int_in(1, 64, "lanes")(text)
    except ValueError as exc:
        raise ValueError(f"{exc} (or auto)") from None


def usable_cores() -> int:
    return len(usable_core_set())


def usable_core_set() -> frozenset[int]:
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset(range(os.cpu_count() or 1))


MIN_CORES_FOR_PROCESSES = 3


def fetch_processes(settings: DrainSettings) -> int:
    """How many fetch processes this run starts: --processes, else one per usable core from
    three cores up. On one or two there are none: the run's own process keeps about a core
    busy (listing, ledger, links, deletes), and what a fetch process takes off it costs more
    in the hand-over than it saves. On 2 cores, 2,000 small objects from SeaweedFS, one run
    after the other: 780 objects/s inline against 665 with two fetch processes (0.94 against
    1.22 CPU-ms per object); over a 25 ms link, 689 against 527 (`make bench`, 2026-12-04)."""
    if settings.processes is not None:
        return settings.processes
    cores = usable_cores()
    return 0 if cores < MIN_CORES_FOR_PROCESSES else min(cores, 8)
