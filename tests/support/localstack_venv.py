"""The venv LocalStack runs from: found or built once, under a file lock, reused after.

LocalStack cannot share the project's venv: it pins its own botocore, needs a newer Python than
the project's 3.11, and drags in dozens of packages s3drain must never depend on by accident.
So it lives in ``<repo>/.venv-localstack/`` (gitignored), built from the pinned
``localstack-constraints.txt`` beside this file.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.server import log_tail

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-localstack"
CONSTRAINTS = Path(__file__).with_name("localstack-constraints.txt")
PACKAGES = ("localstack-core[base-runtime]", "Hypercorn", "service-identity")
# localstack-core 2026.3.0 declares Requires-Python >=3.10 but imports warnings.deprecated,
# which only Python 3.13 has: under 3.12 it starts and then finds "no component plugins".
MIN_PYTHON = (3, 13)
# Lets a machine without pyenv point at any suitable interpreter.
PYTHON_ENV_VAR = "S3DRAIN_LOCALSTACK_PYTHON"

_LOCK = REPO / ".venv-localstack.lock"
_STAMP = VENV / ".installed"
_INSTALL_LOG = VENV.with_name(".venv-localstack.install.log")
_INSTALL_TIMEOUT = 1200.0


class LocalStackUnavailable(RuntimeError):
    """LocalStack cannot be installed here; the message says what to do about it."""


def _version_of(python: str) -> tuple[int, int] | None:
    # Running it is the only test that counts: a pyenv shim for python3.13 exists on PATH even
    # where 3.13 is not the selected version, and then fails when run.
    try:
        done = subprocess.run(
            [python, "-c", "import sys, venv; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    major, minor = done.stdout.split()
    return int(major), int(minor)


def _candidates() -> Iterator[str]:
    if wanted := os.environ.get(PYTHON_ENV_VAR):
        yield wanted
    yield sys.executable
    for minor in range(MIN_PYTHON[1], 20):
        if found := shutil.which(f"python3.{minor}"):
            yield found
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    # Newest first; 3.1[3-9] so that 3.1 never matches 3.10 or 3.11.
    pattern = f"{pyenv_root}/versions/3.1[{MIN_PYTHON[1] - 10}-9]*/bin/python"
    yield from sorted(glob.glob(pattern), reverse=True)


def find_python() -> str:
    """Path of a Python >= 3.13 that can make a venv, or LocalStackUnavailable saying how to get one."""
    tried: list[str] = []
    for python in dict.fromkeys(_candidates()):
        version = _version_of(python)
        if version is not None and version >= MIN_PYTHON:
            return python
        tried.append(f"{python} ({'.'.join(map(str, version)) if version else 'does not run'})")
    need = ".".join(map(str, MIN_PYTHON))
    raise LocalStackUnavailable(
        f"The LocalStack tests need Python >= {need} (localstack-core imports "
        f"warnings.deprecated, new in 3.13) and none was found. Install one, then rerun:\n"
        f"  with pyenv:          pyenv install {need}   (this looks in ~/.pyenv/versions/)\n"
        f"  on Debian 13/trixie: apt-get install python{need} python{need}-venv\n"
        f"  or point {PYTHON_ENV_VAR}=/path/to/python{need} at one.\n"
        f"Tried: {', '.join(tried) or 'nothing'}"
    )


def _wanted_stamp() -> str:
    digest = hashlib.sha256(CONSTRAINTS.read_bytes())
    digest.update("\0".join(PACKAGES).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    with _LOCK.open("a") as lock:
        # Blocks while another pytest (or worktree run) is installing; the kernel drops the
        # lock if that process dies, so a crash never leaves us waiting forever.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install(log: Path) -> None:
    python = find_python()
    # A half-built venv from an interrupted install has no stamp: start it over.
    shutil.rmtree(VENV, ignore_errors=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    steps = [
        [python, "-m", "venv", str(VENV)],
        [*pip, "install", "-q", "-c", str(CONSTRAINTS), *PACKAGES],
    ]
    with log.open("w") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            try:
                done = subprocess.run(
                    step,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=_INSTALL_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise LocalStackUnavailable(
                    f"installing LocalStack took over {_INSTALL_TIMEOUT:.0f} s; log {log}:\n"
                    f"{log_tail(log)}"
                ) from None
            if done.returncode != 0:
                raise LocalStackUnavailable(
                    f"installing LocalStack failed (exit {done.returncode}); log {log}:\n"
                    f"{log_tail(log)}"
                )


def ensure_venv() -> Path:
    """The venv's python, after installing LocalStack into it unless the stamp is current.

    The stamp holds a hash of the constraints file and the package list, so editing either
    reinstalls on the next use.
    """
    wanted = _wanted_stamp()
    with _install_lock():
        python = VENV / "bin" / "python"
        if python.exists() and _STAMP.exists() and _STAMP.read_text() == wanted:
            return python
        started = time.monotonic()
        _install(_INSTALL_LOG)
        _STAMP.write_text(wanted)
        with _INSTALL_LOG.open("a") as out:
            out.write(f"installed in {time.monotonic() - started:.1f} s\n")
        return python
