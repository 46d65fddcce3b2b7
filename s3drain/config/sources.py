"""Where a setting comes from: flags > environment > `config/.env` > defaults.

Each command's settings (`drain/settings.py`, `ingest/settings.py`) are built from one `Sources`
through the parsers here, once; nothing downstream reads the environment again. Every error names
the setting, where the bad value came from and what to do, in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from s3drain.errors import ConfigError
from s3drain.units import parse_duration, parse_size

DEFAULT_ENV_FILE = Path("config/.env")
MiB = 1024 * 1024

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
    "ledger_retention": ("S3DRAIN_LEDGER_RETENTION",),
    "workers": ("S3DRAIN_WORKERS",),
    "processes": ("S3DRAIN_PROCESSES",),
    "lanes": ("S3DRAIN_LANES",),
    "pin": ("S3DRAIN_PIN",),
    "delete_mode": ("S3DRAIN_DELETE_MODE",),
    "conditional_delete": ("S3DRAIN_CONDITIONAL_DELETE",),
    "require_exact_delete": ("S3DRAIN_REQUIRE_EXACT_DELETE",),
    "multipart_threshold": ("S3DRAIN_MULTIPART_THRESHOLD",),
    "part_size": ("S3DRAIN_PART_SIZE",),
    "max_streams": ("S3DRAIN_MAX_STREAMS",),
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
    # SQS (events setup, the watcher)
    "sqs_endpoint_url": ("S3DRAIN_SQS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"),
    "queue_url": ("S3DRAIN_QUEUE_URL",),
    "reconcile": ("S3DRAIN_RECONCILE",),
    "queue_name": ("S3DRAIN_QUEUE_NAME",),
    "sqs_wait_seconds": ("S3DRAIN_SQS_WAIT_SECONDS",),
    "sqs_receivers": ("S3DRAIN_SQS_RECEIVERS",),
    "sqs_visibility_timeout": ("S3DRAIN_SQS_VISIBILITY_TIMEOUT",),
    "max_receive_count": ("S3DRAIN_MAX_RECEIVE_COUNT",),
    "bucket_account": ("S3DRAIN_BUCKET_ACCOUNT",),
    # ingest
    "layer": ("S3DRAIN_LAYER", "LAYER"),
    "origin": ("S3DRAIN_ORIGIN", "ORIGIN"),
    "spec": ("S3DRAIN_SPEC", "SPEC"),
    "format": ("S3DRAIN_FORMAT", "FORMAT"),
    "overwrite": ("S3DRAIN_OVERWRITE",),
}
SECRET_SETTINGS = frozenset({"secret_access_key", "session_token", "access_key_id"})
# A typo in one of our own names (S3DRAIN_NO_DELET=1) must not be silently ignored.
KNOWN_S3DRAIN_NAMES = frozenset(
    name for names in ENV_NAMES.values() for name in names if name.startswith("S3DRAIN_")
)
# Read from the process's environment by the module that needs it, before any settings file:
# where botocore's parsed models are kept (s3/model_cache.py).
ENVIRONMENT_ONLY = frozenset({"S3DRAIN_MODEL_CACHE"})


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
                # Imported here: a run without a settings file does not pay for it (3 ms).
                from dotenv import dotenv_values  # noqa: PLC0415

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
        in_file = sorted(ENVIRONMENT_ONLY & self.dotenv.keys())
        if in_file:
            raise ConfigError(
                f"{in_file[0]} in {env_file} is read from the environment only",
                hint=f"export it where s3drain is started instead ({in_file[0]}=off)",
            )
        for layer, where in ((self.environ, "the environment"), (self.dotenv, str(env_file))):
            unknown = sorted(
                n
                for n in layer
                if n.startswith("S3DRAIN_")
                and n not in KNOWN_S3DRAIN_NAMES
                and n not in ENVIRONMENT_ONLY
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


def convert(name: str, value: _Value, parse: Callable[[str], T]) -> T:
    if not isinstance(value.raw, str):
        return value.raw  # type: ignore[return-value]  # argparse already converted it
    try:
        return parse(value.raw)
    except ValueError as exc:
        raise ConfigError(f"{name.replace('_', ' ')}: {exc} (from {value.origin})") from None


def optional(sources: Sources, name: str, parse: Callable[[str], T], default: T) -> T:
    value = sources.get(name)
    return default if value is None else convert(name, value, parse)


def required(sources: Sources, name: str, label: str) -> str:
    value = sources.get(name)
    if value is None or not str(value.raw).strip():
        raise ConfigError(f"{label} is not set: {sources.describe(name)}")
    return str(value.raw).strip()


def int_in(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range: {what} must be {low} to {high}")
        return number

    return parse


def float_in(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number of seconds") from None
        if not low <= number <= high:
            raise ValueError(f"{number:g} is out of range ({low:g} to {high:g} seconds)")
        return number

    return parse


def size_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        size = parse_size(text)
        if not low <= size <= high:
            raise ValueError(f"{text} is out of range ({low:,} to {high:,} bytes)")
        return size

    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text.lower()

    return parse


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
    return seconds


def bucket_name(text: str) -> str:
    if text.startswith("s3://") or "/" in text:
        raise ConfigError(
            f"bucket {text!r} is not a bucket name: give the name only (no s3://, no /); "
            "the part after the bucket goes in --prefix / PATH_TO_SEARCH"
        )
    if len(text) < 3 or len(text) > 63 or any(c.isspace() or c == ":" for c in text):
        raise ConfigError(f"bucket {text!r} is not a valid bucket name (3 to 63 characters)")
    return text


def folder(sources: Sources, name: str, default: Path) -> Path:
    value = sources.get(name)
    if value is None:
        return default
    return Path(os.path.expanduser(str(value.raw))).absolute()
