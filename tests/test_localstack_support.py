"""How the LocalStack fixture finds its interpreter, what it says when there is none, and its
reset beside a second LocalStack."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support import localstack_venv
from tests.support.localstack import LocalStackServer
from tests.support.localstack_venv import LocalStackUnavailable, find_python
from tests.support.server import s3_client


def _no_python_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(localstack_venv.PYTHON_ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))


_TEST_PYTHON_WOULD_DO = pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="the interpreter running the tests would be found"
)


@_TEST_PYTHON_WOULD_DO
def test_without_python_313_the_error_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_python_anywhere(monkeypatch, tmp_path)
    with pytest.raises(LocalStackUnavailable) as raised:
        find_python()
    message = str(raised.value)
    assert "pyenv install 3.13" in message
    assert "apt-get install python3.13 python3.13-venv" in message
    assert localstack_venv.PYTHON_ENV_VAR in message
    assert sys.executable in message  # what was tried, and why it did not do


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@_TEST_PYTHON_WOULD_DO
def test_a_broken_shim_is_passed_over(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """pyenv puts python3.13 on PATH even where it only prints 'command not found'."""
    _no_python_anywhere(monkeypatch, tmp_path)
    shim = _script(
        tmp_path / "python3.13", "echo 'pyenv: python3.13: command not found' >&2; exit 127"
    )
    with pytest.raises(LocalStackUnavailable, match=f"{shim} \\(does not run\\)"):
        find_python()


def test_the_environment_variable_names_the_interpreter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_python_anywhere(monkeypatch, tmp_path)
    # Stands in for a 3.13 by claiming to be one: only the version it prints is checked.
    fake = _script(tmp_path / "my-python", "echo 3 13")
    monkeypatch.setenv(localstack_venv.PYTHON_ENV_VAR, str(fake))
    assert find_python() == str(fake)


def test_two_localstacks_with_a_bucket_of_one_name_both_reset(
    localstack_server: LocalStackServer, localstack_events_server: LocalStackServer
) -> None:
    """Both keep the bucket's folder at one hard-coded path: the first reset takes the
    second's folder, and the second reset must still leave its LocalStack empty."""
    servers = (localstack_server, localstack_events_server)
    for server in servers:
        server.reset()
        client = s3_client(server.url)
        client.create_bucket(Bucket="one-name")
        client.put_object(Bucket="one-name", Key="k", Body=b"x")
        client.close()
    for server in servers:
        server.reset()
    for server in servers:
        client = s3_client(server.url)
        assert client.list_buckets().get("Buckets", []) == []
        client.close()
