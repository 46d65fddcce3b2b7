"""The real CLI with its fetch processes (the default from three cores up; `--processes 2`
here) against moto's HTTP server: the run says how it fetches, a fetch process killed mid-run
costs retries and never an object, and Ctrl-C or SIGTERM leaves no fetch process and nothing
half-written behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3drain.drain import settings as settings_module
from s3drain.drain.settings import (
    MIN_CORES_FOR_PROCESSES,
    fetch_processes,
    usable_cores,
)
from tests.support.drainkit import bucket_keys, drain_settings, local_tree
from tests.support.proxy import FaultProxy
from tests.support.server import S3Client
from tests.test_cli_e2e import PREFIX, ROOT, cli_env, drain_args, fill, run_cli


def _objects(count: int, size: int = 3000) -> dict[str, bytes]:
    return {
        f"{PREFIX}d{i % 5}/f{i:04d}.bin": os.urandom(size) + bytes(str(i), "ascii")
        for i in range(count)
    }


def _fetch_processes(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"s3drain.drain.fetch_process" in cmdline:
            found.append(int(entry))
    return found


def _wait_for(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (2, 0), (3, 3), (8, 8), (64, 8)])
def test_fetch_processes_from_three_cores_up(
    monkeypatch: pytest.MonkeyPatch, cores: int, expected: int
) -> None:
    monkeypatch.setattr(settings_module, "usable_cores", lambda: cores)
    assert fetch_processes(drain_settings(Path("/nonexistent"))) == expected
    assert fetch_processes(drain_settings(Path("/nonexistent"), processes=1)) == 1


def test_the_run_says_where_it_fetches_and_both_ways_drain_alike(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    cores = usable_cores()
    objects = _objects(300)
    fill(s3, objects)
    result = run_cli([*drain_args(tmp_path), "-vv"], cli_env(s3_url))
    assert result.returncode == 0, result.stderr
    default = (
        f"direct GETs in {min(cores, 8)} fetch processes"
        if cores >= MIN_CORES_FOR_PROCESSES
        else "direct GETs in this process"
    )
    assert default in result.stderr
    assert local_tree(tmp_path / "raw") == {k[len(PREFIX) :]: v for k, v in objects.items()}
    assert bucket_keys(s3) == set()
    for processes, said in (("0", "direct GETs in this process"), ("2", "in 2 fetch processes")):
        fill(s3, objects)
        base = tmp_path / f"p{processes}"
        run = run_cli([*drain_args(base), "-vv", "--processes", processes], cli_env(s3_url))
        assert run.returncode == 0, run.stderr
        assert said in run.stderr
        assert local_tree(base / "raw") == local_tree(tmp_path / "raw")
        assert bucket_keys(s3) == set()


def test_a_fetch_process_killed_mid_run_costs_retries_not_objects(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    objects = _objects(600)
    fill(s3, objects)
    with FaultProxy(s3_url, latency=0.01) as proxy:
        run = subprocess.Popen(
            [sys.executable, "-m", "s3drain", *drain_args(tmp_path), "--processes", "2"],
            env=cli_env(proxy.url),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for(lambda: len(_fetch_processes(run.pid)) == 2)
        _wait_for(lambda: len(local_tree(tmp_path / "raw")) > 20)
        victim = _fetch_processes(run.pid)[0]
        os.kill(victim, signal.SIGKILL)
        _out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    assert "a fetch process ended unexpectedly" in err
    assert local_tree(tmp_path / "raw") == {k[len(PREFIX) :]: v for k, v in objects.items()}
    assert bucket_keys(s3) == set()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_leaves_no_fetch_process_and_nothing_half_written(
    tmp_path: Path, s3_url: str, s3: S3Client, signum: int
) -> None:
    objects = _objects(800, size=20_000)
    fill(s3, objects)
    with FaultProxy(s3_url, latency=0.05) as proxy:
        run = subprocess.Popen(
            [sys.executable, "-m", "s3drain", *drain_args(tmp_path), "--processes", "2"],
            env=cli_env(proxy.url),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for(lambda: len(_fetch_processes(run.pid)) == 2)
        children = _fetch_processes(run.pid)
        _wait_for(lambda: len(local_tree(tmp_path / "raw")) > 10)
        started = time.monotonic()
        run.send_signal(signum)
        _out, err = run.communicate(timeout=60)
        assert time.monotonic() - started < 30
    assert run.returncode == 130, err
    assert not [p for p in children if _alive(p)]
    delivered = local_tree(tmp_path / "raw")
    assert not [name for name in delivered if ".s3drain-" in name]
    for name, body in delivered.items():
        assert objects[PREFIX + name] == body
    # Nothing is lost: every object is on disk, or still in the bucket; the next run ends it.
    left = bucket_keys(s3)
    assert {PREFIX + n for n in delivered} | left == set(objects)
    again = run_cli(drain_args(tmp_path), cli_env(s3_url))
    assert again.returncode == 0, again.stderr
    assert local_tree(tmp_path / "raw") == {k[len(PREFIX) :]: v for k, v in objects.items()}
    assert bucket_keys(s3) == set()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
