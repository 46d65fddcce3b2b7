"""s3drain: drain an S3 prefix to a local folder without ever losing an object.

The names below are the Python surface (see `s3drain.api` for an example); everything else is
internal and may change between releases.
"""

from s3drain.api import drain_settings, ingest_settings, run_drain, run_ingest
from s3drain.drain.run import DrainResult
from s3drain.drain.settings import DrainSettings
from s3drain.errors import ConfigError, ExitCode, S3DrainError
from s3drain.ingest.run import IngestResult
from s3drain.ingest.settings import IngestSettings
from s3drain.version import __version__

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
