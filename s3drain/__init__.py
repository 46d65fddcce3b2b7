"""s3drain: drain an S3 prefix to a local folder without ever losing an object.

The names below are the Python surface (see `s3drain.api` for an example); everything else is
internal and may change between releases.

They are imported on first use, not with the package: the fetch processes import a few small
modules of it (`s3drain.drain.fetch_process`) and must not pay for botocore's session on every
start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from s3drain.version import __version__

if TYPE_CHECKING:
    from s3drain.api import drain_settings, ingest_settings, run_drain, run_ingest
    from s3drain.drain.run import DrainResult
    from s3drain.drain.settings import DrainSettings
    from s3drain.errors import ConfigError, ExitCode, S3DrainError
    from s3drain.ingest.run import IngestResult
    from s3drain.ingest.settings import IngestSettings

_WHERE = {
    "ConfigError": "s3drain.errors",
    "DrainResult": "s3drain.drain.run",
    "DrainSettings": "s3drain.drain.settings",
    "ExitCode": "s3drain.errors",
    "IngestResult": "s3drain.ingest.run",
    "IngestSettings": "s3drain.ingest.settings",
    "S3DrainError": "s3drain.errors",
    "drain_settings": "s3drain.api",
    "ingest_settings": "s3drain.api",
    "run_drain": "s3drain.api",
    "run_ingest": "s3drain.api",
}

__all__ = [
    "ConfigError",
    "DrainResult",
    "DrainSettings",
    "ExitCode",
    "IngestResult",
    "IngestSettings",
    "S3DrainError",
    "__version__",
    "drain_settings",
    "ingest_settings",
    "run_drain",
    "run_ingest",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 's3drain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
