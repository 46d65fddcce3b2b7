"""The botocore S3 client every stage shares, and the counter of the requests it sends.

botocore's own retries are switched off: `retry.py` decides every retry, so the two layers never
multiply (6 x 5 attempts on a bad night).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, cast

import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import DataNotFoundError, ProfileNotFound
from botocore.loaders import Loader
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from s3drain.config.s3 import S3Settings
from s3drain.errors import ConfigError
from s3drain.s3.model_cache import CachedJSONFileLoader, cache_folder
from s3drain.version import __version__

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
else:
    S3Client = BaseClient  # the typed view exists for mypy only; at run time it is botocore's


__all__ = ["UNSENT", "RequestCounter", "S3Client", "make_client"]

# Marks a request botocore built but s3drain answered itself, before anything was sent.
UNSENT = "s3drain_unsent"


class RequestCounter:
    """HTTP requests sent, by S3 operation, retries included (the figure the benchmark quotes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def on_send(self, event_name: str, request: Any = None, **_: Any) -> None:
        if request is not None and request.context.get(UNSENT):
            return  # built to learn from, answered before it left (`direct_target.py`)
        self.add(event_name.rsplit(".", 1)[-1])

    def add(self, operation: str, count: int = 1) -> None:
        """Requests sent outside botocore (`direct.py`) are counted here too."""
        if count:
            with self._lock:
                self._counts[operation] += count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class _S3Loader(Loader):
    """botocore's model loader, asked only whether S3's models exist. botocore's own answer
    lists every service it knows first (about 450 folders walked, 4,000 system calls and 25 ms
    at every start) to find `s3` among them; the same search paths (AWS_DATA_PATH, ~/.aws/models,
    botocore's data) are searched here for S3 alone."""

    def list_available_services(self, type_name: str) -> list[str]:
        try:
            self.list_api_versions("s3", type_name)
        except DataNotFoundError:
            return []
        return ["s3"]


def _s3_loader(session: botocore.session.Session) -> Loader:
    """As botocore's `create_loader`, with `_S3Loader` and the parsed models kept
    (`model_cache.py`)."""
    files = CachedJSONFileLoader(cache_folder())
    data_path = session.get_config_variable("data_path")
    if not data_path:
        return _S3Loader(file_loader=files)
    paths = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
    return _S3Loader(extra_search_paths=paths, file_loader=files)


def parse_timestamp(value: str) -> datetime:
    """S3's two timestamp forms, parsed without dateutil (which cost ~10 % of the client's CPU
    on small objects): ISO 8601 in XML bodies, RFC 1123 in headers. Anything else goes to
    botocore's own parser."""
    try:
        if value[:4].isdigit():
            parsed = datetime.fromisoformat(value)
        else:
            parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return botocore_parse_timestamp(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _freeze_user_agent(client: BaseClient) -> None:
    """botocore rebuilds and re-sanitises its User-Agent (about 30 parts) twice per request,
    another ~10 % of the CPU per small object. Ours does not change within a run, so build it
    once. Guarded: if botocore's internals change shape, this does nothing."""
    creator = getattr(client, "_user_agent_creator", None)
    build = getattr(creator, "to_string", None)
    if creator is None or not callable(build):
        return
    frozen = build()
    creator.to_string = lambda: frozen


def _verify_bodies_ourselves(context: dict[str, Any], **_: Any) -> None:
    """GetObject answers keep their checksum headers (ChecksumMode is still sent) but botocore
    does not wrap the body to validate it: s3drain hashes each byte once itself, per segment,
    and combines ranges (`drain/fetch.py`). botocore's wrapper would hash the bytes a second
    time, and on a server that sends the whole object's checksum with a ranged answer it
    would fail every range."""
    context.get("checksum", {}).pop("response_algorithms", None)


def make_client(settings: S3Settings, counter: RequestCounter | None = None) -> S3Client:
    try:
        session = botocore.session.Session(profile=settings.profile)
        session.register_component("data_loader", _s3_loader(session))
        # Touch the profile now so a typo is a config error, not a surprise at the first request.
        session.get_scoped_config()
    except ProfileNotFound:
        raise ConfigError(
            f"AWS profile {settings.profile!r} is not in ~/.aws/config or ~/.aws/credentials",
            hint="check --profile / AWS_PROFILE",
        ) from None
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    config = Config(
        region_name=settings.region,
        parameter_validation=False,  # every parameter is built here, not typed by a user
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=settings.max_pool_connections,
        retries={"total_max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": settings.addressing_style},
        # ChecksumMode=ENABLED on every GET: the answer names the full-object checksum, which
        # s3drain verifies itself (`_verify_bodies_ourselves`).
        response_checksum_validation="when_supported",
        request_checksum_calculation="when_supported",
        tcp_keepalive=True,
        user_agent_extra=f"s3drain/{__version__}",
    )
    client = session.create_client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        aws_session_token=settings.session_token,
        verify=settings.ca_bundle,
        config=config,
    )
    _freeze_user_agent(client)
    client.meta.events.register("before-call.s3.GetObject", _verify_bodies_ourselves)
    if counter is not None:
        client.meta.events.register("before-send.s3", counter.on_send)
    return cast("S3Client", client)
