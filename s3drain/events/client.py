"""The botocore SQS client: the S3 connection's credentials, region, profile, CA bundle and
timeouts, SQS's own endpoint (`config/sqs.py`).

As for S3, botocore's own retries are off: every SQS call runs under `s3/retry.RetryPolicy`,
so the two layers never multiply and the breaker sees every connection failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ProfileNotFound

from s3drain.config.s3 import S3Settings
from s3drain.config.sqs import SqsSettings
from s3drain.errors import ConfigError
from s3drain.s3.client import RequestCounter
from s3drain.version import __version__

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
else:
    SQSClient = BaseClient  # the typed view exists for mypy only

__all__ = ["SQSClient", "make_sqs_client"]

# A long poll holds the connection for up to 20 s: the read timeout must outlast it.
_LONG_POLL_MARGIN = 10.0


def make_sqs_client(
    s3: S3Settings, sqs: SqsSettings, counter: RequestCounter | None = None
) -> SQSClient:
    try:
        session = botocore.session.Session(profile=s3.profile)
        session.get_scoped_config()
    except ProfileNotFound:
        raise ConfigError(
            f"AWS profile {s3.profile!r} is not in ~/.aws/config or ~/.aws/credentials",
            hint="check --profile / AWS_PROFILE",
        ) from None
    config = Config(
        region_name=s3.region,
        connect_timeout=s3.connect_timeout,
        read_timeout=max(s3.read_timeout, sqs.wait_seconds + _LONG_POLL_MARGIN),
        # Receivers each hold one connection; deletes, the heartbeat and releases one each.
        max_pool_connections=sqs.receivers + 4,
        retries={"total_max_attempts": 1, "mode": "standard"},
        tcp_keepalive=True,
        user_agent_extra=f"s3drain/{__version__}",
    )
    client = session.create_client(
        "sqs",
        endpoint_url=sqs.endpoint_url,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        aws_session_token=s3.session_token,
        verify=s3.ca_bundle,
        config=config,
    )
    if counter is not None:
        client.meta.events.register("before-send.sqs", counter.on_send)
    return cast("SQSClient", client)
