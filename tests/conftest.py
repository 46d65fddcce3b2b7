"""Shared fixtures: one server of each kind per session, reset for every test that asks for it.

``s3_endpoint`` runs a test once per server in ``tests.support.endpoints.SERVERS``; to pick some,
``@pytest.mark.parametrize("s3_endpoint", ["localstack"], indirect=True)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import moto_etag_blind
from tests.support.endpoints import SERVERS, S3Endpoint
from tests.support.eventkit import sqs_client
from tests.support.localstack import LocalStackServer
from tests.support.mounts import FUSE_MISSING, fuse_available, xattrless
from tests.support.proxy import FaultProxy
from tests.support.server import MotoServer, S3Client, s3_client

# In-process moto (mock_aws) is the suite's server that ignores DeleteObjects' per-key ETag,
# as the moto server of the `moto` fixtures is.
moto_etag_blind.install()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def s3_url(moto_server: MotoServer) -> str:
    """URL of the session's moto server, emptied for this test."""
    moto_server.reset()
    return moto_server.url


@pytest.fixture
def s3(s3_url: str) -> Iterator[S3Client]:
    """A client straight to moto (no proxy), to fill and inspect buckets."""
    client = s3_client(s3_url)
    yield client
    client.close()


@pytest.fixture
def fault_proxy(s3_url: str) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the emptied server; no faults until the test configures them."""
    with FaultProxy(s3_url, record_log=True) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def aws_like_moto_server() -> Iterator[MotoServer]:
    """moto patched to honour DeleteObjects' per-key ETag (tests.support.moto_aws_like)."""
    with MotoServer(aws_like=True) as server:
        yield server


@pytest.fixture(scope="session")
def localstack_server() -> Iterator[LocalStackServer]:
    """LocalStack's S3; the first use on a machine installs it into .venv-localstack/.

    Without a Python >= 3.13 this errors with instructions - never a skip, so a machine that
    cannot run LocalStack shows up as failing tests rather than as silently fewer of them.
    """
    with LocalStackServer() as server:
        yield server


@pytest.fixture(scope="session")
def localstack_events_server() -> Iterator[LocalStackServer]:
    """LocalStack with SQS and SNS beside S3 (SERVICES=s3,sqs,sns): its S3 delivers bucket
    notifications to its own queues and topics."""
    with LocalStackServer(services=("s3", "sqs", "sns")) as server:
        yield server


@pytest.fixture(params=["moto", "localstack"])
def events_url(request: pytest.FixtureRequest) -> str:
    """A server with S3, SQS and SNS on one URL, emptied for this test: moto's (session) server
    or LocalStack with SERVICES=s3,sqs,sns. A test using it runs on both."""
    fixture = "moto_server" if request.param == "moto" else "localstack_events_server"
    server: MotoServer | LocalStackServer = request.getfixturevalue(fixture)
    server.reset()
    return server.url


@pytest.fixture
def events_localstack_url(localstack_events_server: LocalStackServer) -> str:
    localstack_events_server.reset()
    return localstack_events_server.url


_SERVER_FIXTURES = {
    "moto": "moto_server",
    "moto-aws-like": "aws_like_moto_server",
    "localstack": "localstack_server",
}


@pytest.fixture(params=SERVERS)
def s3_endpoint(request: pytest.FixtureRequest) -> Iterator[S3Endpoint]:
    """One of SERVERS, emptied for this test (a test using it runs once per server)."""
    name: str = request.param
    # Looked up by name so that a session only starts the servers its tests ask for.
    server: MotoServer | LocalStackServer = request.getfixturevalue(_SERVER_FIXTURES[name])
    server.reset()
    endpoint = S3Endpoint(name, server.url)
    yield endpoint
    endpoint.close()


@pytest.fixture
def xattrless_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a file system without user xattrs (bindfs --xattr-none over tmp_path)."""
    if not fuse_available():
        pytest.skip(FUSE_MISSING)
    with xattrless(tmp_path / "backing", tmp_path / "mount") as mounted:
        yield mounted


@pytest.fixture(params=["native", "xattr-none"])
def base_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A local base path on this machine's own file system, or on one without user xattrs
    (NFS, SMB and many FUSE mounts): a test using it runs on both."""
    if request.param == "native":
        return tmp_path / "base"
    mounted: Path = request.getfixturevalue("xattrless_dir")
    return mounted / "base"


_LOCALSTACK_FIXTURES = {"localstack_server", "localstack_events_server", "events_localstack_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n` (`make test`), every test that needs LocalStack runs on one worker:
    its servers are session fixtures, and each worker would otherwise start its own (two
    LocalStacks of ~15 s and ~400 MiB each per worker)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _LOCALSTACK_FIXTURES or "localstack" in item.nodeid.lower():
            item.add_marker(pytest.mark.xdist_group("localstack"))


@pytest.fixture
def lake_clients(s3_url: str) -> Iterator[tuple[Any, Any]]:
    """s3://lake (no notifications) on moto, and its SQS: the watcher's tests."""
    s3, sqs = s3_client(s3_url), sqs_client(s3_url)
    s3.create_bucket(Bucket="lake")
    yield s3, sqs
    s3.close()
    sqs.close()
