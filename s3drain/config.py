"""One frozen settings object per command, built once: flags > environment > .env > defaults.

Nothing downstream reads the environment again. Every error names the setting, where the bad
value came from and what to do, in one line.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar, cast

from dotenv import dotenv_values

from s3drain.errors import ConfigError
from s3drain.filters import FilterRule, Shard, compile_rule, parse_shard
from s3drain.units import parse_duration, parse_size

DEFAULT_ENV_FILE = Path("config/.env")
MiB = 1024 * 1024

MatchMode = Literal["size", "checksum"]
DeleteMode = Literal["batch", "single"]
AddressingStyle = Literal["auto", "path", "virtual"]

# Environment names per setting, first match wins within one layer. Matched case-insensitively,
# so the seed's lower-case `.env` names (bucket_name, path_to_search, ...) work unchanged.
ENV_NAMES: dict[str, tuple[str, ...]] = {
    "bucket": ("BUCKET_NAME", "S3DRAIN_BUCKET"),
    "prefix": ("PATH_TO_SEARCH", "S3DRAIN_PREFIX"),
    "local_base_path": ("LOCAL_BASE_PATH", "S3DRAIN_LOCAL_BASE_PATH"),
    "raw_dir": ("RAW_DIR", "S3DRAIN_RAW_DIR"),
    "processed_dir": ("PROCESSED_DIR", "S3DRAIN_PROCESSED_DIR"),
    "audit_log": ("S3DRAIN_AUDIT_LOG",),
    "match": ("S3DRAIN_MATCH",),
    "workers": ("S3DRAIN_WORKERS",),
    "delete_mode": ("S3DRAIN_DELETE_MODE",),
    "conditional_delete": ("S3DRAIN_CONDITIONAL_DELETE",),
    "multipart_threshold": ("S3DRAIN_MULTIPART_THRESHOLD",),
    "part_size": ("S3DRAIN_PART_SIZE",),
    "min_age": ("S3DRAIN_MIN_AGE",),
    "max_objects": ("S3DRAIN_MAX_OBJECTS",),
    "max_bytes": ("S3DRAIN_MAX_BYTES",),
    "max_delete": ("S3DRAIN_MAX_DELETE",),
    "shard": ("S3DRAIN_SHARD",),
    "metrics_file": ("S3DRAIN_METRICS_FILE",),
    "dry_run": ("S3DRAIN_DRY_RUN",),
    "no_delete": ("S3DRAIN_NO_DELETE",),
    "include": ("S3DRAIN_INCLUDE",),
    "exclude": ("S3DRAIN_EXCLUDE",),
    "endpoint_url": ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "profile": ("AWS_PROFILE",),
    "addressing_style": ("S3_ADDRESSING_STYLE", "S3DRAIN_ADDRESSING_STYLE"),
    "access_key_id": ("AWS_ACCESS_KEY_ID",),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
    "ca_bundle": ("AWS_CA_BUNDLE",),
    "max_attempts": ("S3DRAIN_MAX_ATTEMPTS",),
    "connect_timeout": ("S3DRAIN_CONNECT_TIMEOUT",),
    "read_timeout": ("S3DRAIN_READ_TIMEOUT",),
    # ingest
    "layer": ("S3DRAIN_LAYER", "LAYER"),
    "origin": ("S3DRAIN_ORIGIN", "ORIGIN"),
    "spec": ("S3DRAIN_SPEC", "SPEC"),
    "format": ("S3DRAIN_FORMAT", "FORMAT"),
}
SECRET_SETTINGS = frozenset({"secret_access_key", "session_token", "access_key_id"})
# A typo in one of our own names (S3DRAIN_NO_DELET=1) must not be silently ignored.
KNOWN_S3DRAIN_NAMES = frozenset(
    name for names in ENV_NAMES.values() for name in names if name.startswith("S3DRAIN_")
)


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3: shared by `drain` and `ingest`."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    addressing_style: AddressingStyle = "auto"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    max_attempts: int = 6
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_pool_connections: int = 40

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in output; the reporter masks them."""
        return tuple(s for s in (self.secret_access_key, self.session_token) if s)


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
    match: MatchMode = "size"
    workers: int = 16
    delete_mode: DeleteMode = "batch"
    conditional_delete: bool = True
    delete_batch_size: int = 1000
    # A timer flush costs one request: at 5 s that stays within 1% of requests down to ~25 small
    # objects/s (2 s broke the 1.01 target on a loaded CI host), and a verified object still
    # waits only seconds for its delete.
    delete_flush_seconds: float = 5.0
    multipart_threshold: int = 16 * MiB
    part_size: int = 8 * MiB
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
    verbosity: int = 0
    json_summary: bool = False


@dataclass(frozen=True)
class _Value:
    raw: object
    origin: str  # "--workers", "S3DRAIN_WORKERS in the environment", "workers default"


class Sources:
    """Looks a setting up in the flags, then the environment, then the .env file."""

    def __init__(
        self,
        flags: Mapping[str, object],
        environ: Mapping[str, str],
        env_file: Path | None,
        env_file_explicit: bool = False,
    ) -> None:
        self.flags = flags
        self.environ = _casefold_keys(environ)
        self.env_file = env_file
        self.dotenv: dict[str, str] = {}
        if env_file is not None:
            if env_file.is_file():
                try:
                    values = dotenv_values(env_file)
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"cannot read the settings file {env_file}: {exc}") from exc
                self.dotenv = _casefold_keys({k: v for k, v in values.items() if v is not None})
            elif env_file_explicit:
                raise ConfigError(
                    f"settings file {env_file} does not exist",
                    hint="copy config/.env.example to it, or drop --env-file to use flags only",
                )
        for layer, where in ((self.environ, "the environment"), (self.dotenv, str(env_file))):
            unknown = sorted(
                n for n in layer if n.startswith("S3DRAIN_") and n not in KNOWN_S3DRAIN_NAMES
            )
            if unknown:
                raise ConfigError(
                    f"unknown setting {unknown[0]} in {where}",
                    hint="the S3DRAIN_ names s3drain reads: "
                    + ", ".join(sorted(KNOWN_S3DRAIN_NAMES)),
                )

    def get(self, name: str) -> _Value | None:
        flag = self.flags.get(name)
        if flag is not None:
            return _Value(flag, f"--{name.replace('_', '-')}")
        for layer, where in ((self.environ, "the environment"), (self.dotenv, str(self.env_file))):
            for env_name in ENV_NAMES.get(name, ()):
                found = layer.get(env_name)
                if found is not None and found.strip() != "":
                    return _Value(found.strip(), f"{env_name} in {where}")
        return None

    def describe(self, name: str) -> str:
        """How a user sets it, for 'is not set' messages."""
        env = ENV_NAMES.get(name, ())
        flag = f"--{name.replace('_', '-')}"
        return f"pass {flag} or set {env[0]} in {self.env_file or 'config/.env'}" if env else flag


def _casefold_keys(values: Mapping[str, str]) -> dict[str, str]:
    # Upper-case names win over their lower-case twins when both are present.
    out: dict[str, str] = {}
    for key in sorted(values, key=lambda k: k != k.upper()):
        out.setdefault(key.upper(), values[key])
    return out


T = TypeVar("T")


def _convert(name: str, value: _Value, parse: Callable[[str], T]) -> T:
    if not isinstance(value.raw, str):
        return value.raw  # type: ignore[return-value]  # argparse already converted it
    try:
        return parse(value.raw)
    except ValueError as exc:
        raise ConfigError(f"{name.replace('_', ' ')}: {exc} (from {value.origin})") from None


def _opt(sources: Sources, name: str, parse: Callable[[str], T], default: T) -> T:
    value = sources.get(name)
    return default if value is None else _convert(name, value, parse)


def _required(sources: Sources, name: str, label: str) -> str:
    value = sources.get(name)
    if value is None or not str(value.raw).strip():
        raise ConfigError(f"{label} is not set: {sources.describe(name)}")
    return str(value.raw).strip()


def _int_in(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range: {what} must be {low} to {high}")
        return number

    return parse


def _float_in(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number of seconds") from None
        if not low <= number <= high:
            raise ValueError(f"{number:g} is out of range ({low:g} to {high:g} seconds)")
        return number

    return parse


def _size_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        size = parse_size(text)
        if not low <= size <= high:
            raise ValueError(f"{text} is out of range ({low:,} to {high:,} bytes)")
        return size

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text.lower()

    return parse


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
    return seconds


def load_s3_settings(sources: Sources, workers: int) -> S3Settings:
    endpoint = _opt(sources, "endpoint_url", _endpoint, None)
    access_key = _opt(sources, "access_key_id", str, None)
    secret_key = _opt(sources, "secret_access_key", str, None)
    if (access_key is None) != (secret_key is None):
        missing = "AWS_SECRET_ACCESS_KEY" if secret_key is None else "AWS_ACCESS_KEY_ID"
        raise ConfigError(
            f"{missing} is not set but its partner is: set both, or neither to use the "
            "normal AWS credential chain (profiles, SSO, instance roles)"
        )
    return S3Settings(
        endpoint_url=endpoint,
        region=_opt(sources, "region", str, None),
        profile=_opt(sources, "profile", str, None),
        addressing_style=cast(
            AddressingStyle,
            _opt(sources, "addressing_style", _choice("auto", "path", "virtual"), "auto"),
        ),
        access_key_id=access_key,
        secret_access_key=secret_key,
        session_token=_opt(sources, "session_token", str, None),
        ca_bundle=_opt(sources, "ca_bundle", str, None),
        max_attempts=_opt(sources, "max_attempts", _int_in(1, 100, "max attempts"), 6),
        connect_timeout=_opt(sources, "connect_timeout", _float_in(0.1, 600), 10.0),
        read_timeout=_opt(sources, "read_timeout", _float_in(0.1, 3600), 60.0),
        # Workers each hold one connection and a large object's parts one more each.
        max_pool_connections=2 * workers + 4,
    )


def _endpoint(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"{text!r} is not a URL (for example http://127.0.0.1:9000)")
    return text.rstrip("/")


def _bucket(text: str) -> str:
    if text.startswith("s3://") or "/" in text:
        raise ConfigError(
            f"bucket {text!r} is not a bucket name: give the name only (no s3://, no /); "
            "the part after the bucket goes in --prefix / PATH_TO_SEARCH"
        )
    if len(text) < 3 or len(text) > 63 or any(c.isspace() or c == ":" for c in text):
        raise ConfigError(f"bucket {text!r} is not a valid bucket name (3 to 63 characters)")
    return text


def _dir(sources: Sources, name: str, default: Path) -> Path:
    value = sources.get(name)
    if value is None:
        return default
    return Path(os.path.expanduser(str(value.raw))).absolute()


def load_drain_settings(sources: Sources) -> DrainSettings:
    bucket = _bucket(_required(sources, "bucket", "bucket"))
    prefix_value = sources.get("prefix")
    if prefix_value is None:
        raise ConfigError(
            f"prefix is not set: {sources.describe('prefix')} "
            "(use --prefix '' for the whole bucket)"
        )
    prefix = str(prefix_value.raw)
    base_text = _required(sources, "local_base_path", "local base path")
    base = Path(os.path.expanduser(base_text)).absolute()

    workers = _opt(sources, "workers", _int_in(1, 256, "workers"), 16)
    raw_dir = _dir(sources, "raw_dir", base / "raw")
    processed_dir = _dir(sources, "processed_dir", base / "processed")
    state_dir = base / ".s3drain"
    _check_folders(raw_dir, processed_dir, state_dir)
    audit_log = _dir(sources, "audit_log", state_dir / "audit.jsonl")

    part_size = _opt(sources, "part_size", _size_in(MiB, 5 * 1024 * MiB), 8 * MiB)
    threshold = _opt(sources, "multipart_threshold", _size_in(MiB, 5 * 1024**4), 16 * MiB)
    verbosity = int(sources.flags.get("verbosity") or 0)  # type: ignore[call-overload]
    metrics = sources.get("metrics_file")
    return DrainSettings(
        s3=load_s3_settings(sources, workers),
        bucket=bucket,
        prefix=prefix,
        local_base_path=base,
        raw_dir=raw_dir,
        processed_dir=processed_dir,
        state_dir=state_dir,
        audit_log=audit_log,
        match=cast(MatchMode, _opt(sources, "match", _choice("size", "checksum"), "size")),
        workers=workers,
        delete_mode=cast(
            DeleteMode, _opt(sources, "delete_mode", _choice("batch", "single"), "batch")
        ),
        conditional_delete=_opt(sources, "conditional_delete", _bool, True),
        multipart_threshold=threshold,
        part_size=part_size,
        dry_run=_opt(sources, "dry_run", _bool, False),
        no_delete=_opt(sources, "no_delete", _bool, False),
        rules=_filter_rules(sources),
        min_age=_opt(sources, "min_age", _positive_duration, None),
        max_objects=_opt(sources, "max_objects", _int_in(1, 10**12, "max objects"), None),
        max_bytes=_opt(sources, "max_bytes", _size_in(1, 10**18), None),
        max_delete=_opt(sources, "max_delete", _int_in(0, 10**12, "max delete"), None),
        shard=_opt(sources, "shard", parse_shard, None),
        verbosity=verbosity,
        json_summary=bool(sources.flags.get("json_summary")),
        metrics_file=None
        if metrics is None
        else Path(os.path.expanduser(str(metrics.raw))).absolute(),
        progress=bool(sources.flags.get("progress")),
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
    bucket = _bucket(_required(sources, "bucket", "bucket"))
    workers = _opt(sources, "workers", _int_in(1, 256, "workers"), 8)
    layer = _required(sources, "layer", "layer")
    origin = _required(sources, "origin", "origin")
    spec = _required(sources, "spec", "spec")
    fmt = _opt(sources, "format", str, None)
    for label, part in (("layer", layer), ("origin", origin), ("spec", spec), ("format", fmt)):
        if part is not None and ("/" in part or part in (".", "..") or not part.strip()):
            raise ConfigError(f"{label} {part!r} must be one key segment (no '/', not '.' or '..')")
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
        multipart_threshold=_opt(
            sources, "multipart_threshold", _size_in(5 * MiB, 5 * 1024**3), 64 * MiB
        ),
        part_size=_opt(sources, "part_size", _size_in(5 * MiB, 5 * 1024 * MiB), 16 * MiB),
        dry_run=_opt(sources, "dry_run", _bool, False),
        verbosity=int(sources.flags.get("verbosity") or 0),  # type: ignore[call-overload]
        json_summary=bool(sources.flags.get("json_summary")),
    )
