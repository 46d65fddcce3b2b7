"""LocalStack's S3 in its own process: a second, independent S3 implementation for the tests.

Shaped like ``MotoServer``: ``with LocalStackServer() as server: server.url``. The first use
on a machine builds ``.venv-localstack/`` (see ``localstack_venv``), which takes a few tens of
seconds; later uses start in a few seconds.

Run ``python -m tests.support.localstack`` to keep one up until killed; the URL is the first
line of stdout.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from s3drain.drain.delete_requests import fits_xml
from tests.support.localstack_venv import LocalStackUnavailable, ensure_venv
from tests.support.server import (
    HOST,
    ServerStartError,
    exit_on_signal,
    free_port,
    log_tail,
    s3_client,
    service_client,
    stop_process,
)

START_TIMEOUT = 90.0
# A clean SIGTERM exit takes ~1 s. Now and then LocalStack 2026.3.0 never exits after it: its
# hypercorn runtime stops the asyncio loop from another thread (loop.stop() is not
# thread-safe), the loop sleeps in epoll forever, and no further signal or connection wakes
# it. Nothing is persisted (PERSISTENCE=0, a temp FILESYSTEM_ROOT), so SIGKILL loses nothing.
STOP_TIMEOUT = 5.0
_START_ATTEMPTS = 3
_READY_LINE = "Ready."

# From shared/compat/README.md: S3 alone, loaded before "Ready.", nothing written outside the
# temp folder, no DNS server, no event reporting, no certificate download (no network here).
_BASE_ENV = {
    "SERVICES": "s3",
    "EAGER_SERVICE_LOADING": "1",
    "GATEWAY_SERVER": "hypercorn",
    "DNS_ADDRESS": "0",
    "DISABLE_EVENTS": "1",
    "SKIP_SSL_CERT_DOWNLOAD": "1",
    "PERSISTENCE": "0",
}
# Only these of our environment reach LocalStack: it reads dozens of variables as settings
# (DEBUG, LOCALSTACK_HOST, AWS_*, proxies), and a developer's shell should not change the tests.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


def _running(port: int, services: tuple[str, ...]) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", "/_localstack/health")
        response = conn.getresponse()
        health: dict[str, Any] = json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        conn.close()
    states = health.get("services", {})
    return response.status == 200 and all(states.get(s) == "running" for s in services)


class LocalStackServer:
    """``with LocalStackServer() as server: server.url`` — LocalStack S3 on a free local port.

    ``services`` adds others to S3: ``("s3", "sqs", "sns")`` for the event tests, whose S3 then
    delivers bucket notifications to its own SQS (and SNS). EventBridge needs moto inside
    LocalStack's venv, which the pinned install does not have.
    """

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        services: tuple[str, ...] = ("s3",),
    ) -> None:
        self.services = services
        self._wanted_port = port
        self._own_log = log_path is None
        self.log_path = log_path or self._new_log_file()
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._root: Path | None = None

    @staticmethod
    def _new_log_file() -> Path:
        fd, name = tempfile.mkstemp(prefix="localstack-", suffix=".log")
        os.close(fd)
        return Path(name)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("LocalStack is not running")
        return self._process.pid

    def start(self) -> Self:
        try:
            python = ensure_venv()
        except LocalStackUnavailable:
            # Nothing ran, so the (empty) log would only be litter; a start failure below keeps
            # it, as its message points there.
            self.close()
            raise
        attempts = 1 if self._wanted_port else _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            self.port = self._wanted_port or free_port()
            self._process = self._spawn(python)
            if self._wait_until_up(give_up=attempt == attempts):
                return self
        raise AssertionError("unreachable")

    def _spawn(self, python: Path) -> subprocess.Popen[bytes]:
        self._root = Path(tempfile.mkdtemp(prefix="localstack-root-"))
        env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
        env |= _BASE_ENV
        env["SERVICES"] = ",".join(self.services)
        # hypercorn binds exactly this address; LocalStack's default server binds 0.0.0.0.
        env["GATEWAY_LISTEN"] = f"{HOST}:{self.port}"
        env["FILESYSTEM_ROOT"] = str(self._root)
        # LocalStack keeps state under $TMPDIR/localstack whatever FILESYSTEM_ROOT says; this
        # keeps it in our folder too.
        env["TMPDIR"] = str(self._root / "tmp")
        (self._root / "tmp").mkdir()
        with self.log_path.open("ab") as log:
            # Output goes to a file: a pipe nobody reads fills up and then blocks LocalStack.
            return subprocess.Popen(
                [str(python), "-c", _MAIN_WITH_OWN_S3_STORAGE, str(self._root / "s3-storage")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._root,
            )

    def _ready(self) -> bool:
        try:
            said_ready = _READY_LINE in self.log_path.read_text(errors="replace")
        except OSError:
            return False
        return said_ready and _running(self.port, self.services)

    def _wait_until_up(self, give_up: bool) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                if give_up:
                    raise ServerStartError(
                        f"LocalStack exited with code {code} on port {self.port}; "
                        f"log {self.log_path}:\n{log_tail(self.log_path)}"
                    )
                return False
            if self._ready():
                return True
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(
            f"LocalStack did not say {_READY_LINE!r} on port {self.port} within "
            f"{START_TIMEOUT:.0f} s; log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, STOP_TIMEOUT)
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    def close(self) -> None:
        """Stop the server and remove the log file this object created."""
        self.stop()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

    def reset(self) -> None:
        """Delete every bucket with all its versions, delete markers and uploads (and every
        queue and topic, where those services run).

        LocalStack's community edition has no state-reset endpoint (``/_localstack/state``
        is a Pro feature), so this goes through the services' APIs.
        """
        client = s3_client(self.url, retries={"total_max_attempts": 1})
        try:
            for bucket in client.list_buckets().get("Buckets", []):
                _empty_and_delete(client, bucket["Name"])
        finally:
            client.close()
        if "sqs" in self.services:
            sqs = service_client("sqs", self.url)
            for url in sqs.list_queues().get("QueueUrls", []):
                sqs.delete_queue(QueueUrl=url)
            sqs.close()
        if "sns" in self.services:
            sns = service_client("sns", self.url)
            for topic in sns.list_topics().get("Topics", []):
                sns.delete_topic(TopicArn=topic["TopicArn"])
            sns.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _empty_and_delete(client: Any, bucket: str) -> None:
    uploads = client.get_paginator("list_multipart_uploads")
    for page in uploads.paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    # Versions and delete markers both, so a versioned bucket really ends up empty.
    versions = client.get_paginator("list_object_versions")
    for page in versions.paginate(Bucket=bucket):
        every = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for kind in ("Versions", "DeleteMarkers")
            for item in page.get(kind, [])
        ]
        # A key XML 1.0 cannot carry (a control character) goes in a URL, one at a time.
        doomed = [o for o in every if fits_xml(o["Key"])]
        for alone in (o for o in every if not fits_xml(o["Key"])):
            client.delete_object(Bucket=bucket, **alone)
        if doomed:
            answer = client.delete_objects(Bucket=bucket, Delete={"Objects": doomed})
            if answer.get("Errors"):
                raise RuntimeError(f"LocalStack reset could not empty {bucket}: {answer}")
    client.delete_bucket(Bucket=bucket)


# LocalStack's S3 keeps a folder per bucket (its multipart parts among them) under one
# hard-coded path, /tmp/localstack-s3-storage, shared by every LocalStack on the machine: one
# deleting its bucket "servers" removed another's parts mid-upload (CompleteMultipartUpload
# failed with ENOENT under pytest -n 3). Each of ours gets its own, set before LocalStack
# creates its S3 provider.
_MAIN_WITH_OWN_S3_STORAGE = (
    "import sys, runpy\n"
    "import localstack.services.s3.provider as provider\n"
    "provider.DEFAULT_S3_TMP_DIR = sys.argv.pop(1)\n"
    "runpy.run_module('localstack.runtime.main', run_name='__main__', alter_sys=True)\n"
)


def main() -> None:
    # SystemExit unwinds the with-block, so LocalStack is stopped along with us.
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGINT, exit_on_signal)
    with LocalStackServer() as server:
        print(server.url, flush=True)
        while server.running():
            time.sleep(0.5)
        sys.exit(f"LocalStack exited; log {server.log_path}:\n{log_tail(server.log_path)}")


if __name__ == "__main__":
    main()
