"""A moto S3 server in its own process, and a botocore client factory for it.

A separate process keeps moto's CPU and its global state out of the process under test, and
lets the client talk real HTTP, which in-process mocking would not.

Run ``python -m tests.support.server [--port N]`` to keep one up until killed; the URL is the
first line of stdout.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TypeAlias

import botocore.session
from botocore.config import Config

HOST = "127.0.0.1"
_REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
_START_ATTEMPTS = 3
_LOG_TAIL_CHARS = 4000

# botocore-stubs types no service methods (those live in mypy-boto3-s3, which we do not
# depend on), so a typed client would reject every `put_object` call.
S3Client: TypeAlias = Any

_session_lock = threading.Lock()
_session: botocore.session.Session | None = None


def stop_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not gone after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerStartError(RuntimeError):
    """The moto server did not come up."""


def free_port() -> int:
    """Return a port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _request(port: int, method: str, path: str, timeout: float) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _answers(port: int) -> bool:
    try:
        return _request(port, "GET", "/moto-api/", timeout=0.5) == 200
    except (OSError, http.client.HTTPException):
        return False


def _new_log_file() -> Path:
    fd, name = tempfile.mkstemp(prefix="moto-", suffix=".log")
    os.close(fd)
    return Path(name)


def log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
    except OSError:
        return "<no log>"


class MotoServer:
    """``with MotoServer() as server: server.url`` — a moto server on a free local port.

    It runs ``tests.support.moto_etag_blind`` (moto ignoring the per-key ETag of DeleteObjects,
    whatever its version); ``aws_like=True`` runs ``tests.support.moto_aws_like`` instead: moto
    patched to honour that ETag as AWS does. ``module`` runs another
    module of this repository instead, with leading arguments of its own (the bench's
    ``("benchmarks.moto_server", "--aws-like")``); moto.server's ``-H`` and ``-p`` follow them.
    """

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        *,
        aws_like: bool = False,
        module: tuple[str, ...] | None = None,
    ) -> None:
        self._wanted_port = port
        self.aws_like = aws_like
        plain = "tests.support.moto_etag_blind"  # moto ignoring DeleteObjects' ETag, any version
        self._module = module or ("tests.support.moto_aws_like" if aws_like else plain,)
        self._own_log = log_path is None
        self.log_path = log_path or _new_log_file()
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("moto server is not running")
        return self._process.pid

    def start(self) -> Self:
        # A port picked by free_port() can be taken by someone else before moto binds it;
        # only an explicitly requested port is not worth retrying.
        attempts = 1 if self._wanted_port else _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            self.port = self._wanted_port or free_port()
            self._process = self._spawn()
            if self._wait_until_up(give_up=attempt == attempts):
                return self
        raise AssertionError("unreachable")

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = None
        if self._module[0] != "moto.server":
            # The tests package is not installed; it is importable from the repo root.
            path = os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))
            env = {**os.environ, "PYTHONPATH": path}
        with self.log_path.open("ab") as log:
            # Output goes to a file: a pipe nobody reads fills up and then blocks moto.
            return subprocess.Popen(
                [sys.executable, "-m", *self._module, "-H", HOST, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def _wait_until_up(self, give_up: bool) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                if give_up:
                    raise ServerStartError(
                        f"moto server exited with code {self._process.returncode} "
                        f"on port {self.port}; log {self.log_path}:\n{log_tail(self.log_path)}"
                    )
                return False
            if _answers(self.port):
                return True
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(
            f"moto server did not answer on port {self.port} within {START_TIMEOUT:.0f} s; "
            f"log {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, STOP_TIMEOUT)

    def close(self) -> None:
        """Stop the server and remove the log file this object created."""
        self.stop()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

    def reset(self) -> None:
        """Forget all buckets and objects (moto's reset API)."""
        status = _request(self.port, "POST", "/moto-api/reset", timeout=10.0)
        if status != 200:
            raise RuntimeError(f"moto reset answered HTTP {status}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _botocore_session() -> botocore.session.Session:
    # Loading the S3 model takes ~100 ms per session; tests make many clients.
    global _session  # noqa: PLW0603
    with _session_lock:
        if _session is None:
            _session = botocore.session.get_session()
        return _session


def s3_client(url: str, **config: Any) -> S3Client:
    """A botocore S3 client for ``url`` with dummy credentials and path-style addressing.

    ``config`` goes to ``botocore.config.Config``, e.g. ``retries={"total_max_attempts": 1}``
    or ``read_timeout=2``.
    """
    config["s3"] = {"addressing_style": "path", **config.get("s3", {})}
    # An empty proxies dict stops HTTP_PROXY in the environment from rerouting local traffic.
    config.setdefault("proxies", {})
    session = _botocore_session()
    with _session_lock:
        return session.create_client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(**config),
        )


def service_client(service: str, url: str, **config: Any) -> Any:
    """A botocore client of another service (sqs, sns, events) at ``url``, with the same dummy
    credentials and region as ``s3_client``: moto and LocalStack serve every service there."""
    config.setdefault("proxies", {})
    session = _botocore_session()
    with _session_lock:
        return session.create_client(
            service,
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(**config),
        )


def exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a moto S3 server until killed.")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument(
        "--aws-like", action="store_true", help="honour DeleteObjects' per-key ETag as AWS does"
    )
    args = parser.parse_args(argv)
    # SystemExit unwinds the with-block, so moto is stopped along with us.
    signal.signal(signal.SIGTERM, exit_on_signal)
    signal.signal(signal.SIGINT, exit_on_signal)
    with MotoServer(port=args.port, aws_like=args.aws_like) as server:
        print(server.url, flush=True)
        while server.running():
            time.sleep(0.5)
        sys.exit(f"moto server exited; log {server.log_path}:\n{log_tail(server.log_path)}")


if __name__ == "__main__":
    main()
