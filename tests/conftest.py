"""Shared fixtures: one moto server per session, reset for every test that asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.proxy import FaultProxy
from tests.support.server import MotoServer, S3Client, s3_client


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
