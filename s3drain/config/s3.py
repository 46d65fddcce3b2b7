"""How to reach S3: the settings `drain` and `ingest` share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast

from s3drain.config.sources import Sources, choice, float_in, int_in, optional
from s3drain.errors import ConfigError

AddressingStyle = Literal["auto", "path", "virtual"]


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


def load_s3_settings(sources: Sources, workers: int) -> S3Settings:
    endpoint = optional(sources, "endpoint_url", _endpoint, None)
    access_key = optional(sources, "access_key_id", str, None)
    secret_key = optional(sources, "secret_access_key", str, None)
    if (access_key is None) != (secret_key is None):
        missing = "AWS_SECRET_ACCESS_KEY" if secret_key is None else "AWS_ACCESS_KEY_ID"
        raise ConfigError(
            f"{missing} is not set but its partner is: set both, or neither to use the "
            "normal AWS credential chain (profiles, SSO, instance roles)"
        )
    return S3Settings(
        endpoint_url=endpoint,
        region=optional(sources, "region", str, None),
        profile=optional(sources, "profile", str, None),
        addressing_style=cast(
            AddressingStyle,
            optional(sources, "addressing_style", choice("auto", "path", "virtual"), "auto"),
        ),
        access_key_id=access_key,
        secret_access_key=secret_key,
        session_token=optional(sources, "session_token", str, None),
        ca_bundle=optional(sources, "ca_bundle", str, None),
        max_attempts=optional(sources, "max_attempts", int_in(1, 100, "max attempts"), 6),
        connect_timeout=optional(sources, "connect_timeout", float_in(0.1, 600), 10.0),
        read_timeout=optional(sources, "read_timeout", float_in(0.1, 3600), 60.0),
        # Workers each hold one connection and a large object's parts one more each.
        max_pool_connections=2 * workers + 4,
    )


def _endpoint(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"{text!r} is not a URL (for example http://127.0.0.1:9000)")
    return text.rstrip("/")
