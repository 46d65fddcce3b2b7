"""Lanes as a user runs them: the real `python -m s3drain` with --lanes against moto's HTTP
server. One run, one lock, one audit log, one summary and exit code, however many processes;
a lane that dies stops the others; nothing outlives a run killed with -9; Ctrl-C stops them
all; and the next run finishes whatever any of that left."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tests.support.drainkit import bucket_keys, local_tree
from tests.support.proxy import FaultProxy
from tests.support.server import S3Client
from tests.test_cli_e2e import PREFIX, ROOT, audit, cli_env, drain_args, fill, run_cli

LANE_MODULE = "s3drain.cli.lane"


def _objects(count: int, size: int = 300) -> dict[str, bytes]:
    return {f"{PREFIX}d{n % 7}/{n:05d}.csv": os.urandom(size) for n in range(count)}


def _lanes_of(pid: int) -> list[int]:
    """Processes running a lane whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and LANE_MODULE.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _any_lane_alive(pids: list[int]) -> bool:
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if LANE_MODULE.encode() in cmdline and state != "Z":
            return True
    return False


def _placed(base: Path) -> int:
    """Files under their real names so far (names only: reading files of a live run races
    with its temp files' renames)."""
    return sum(1 for path in (base / "raw").rglob("*.csv") if ".s3drain-" not in path.name)


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _start(base: Path, url: str, *more: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "s3drain", *drain_args(base, "--lanes", "2", *more)],
        env=cli_env(url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _assert_all_accounted(base: Path, s3: S3Client, objects: Mapping[str, bytes]) -> None:
    """Every object: still in S3, or its bytes under raw/ and one audit line saying deleted."""
    left = bucket_keys(s3)
    placed = local_tree(base / "raw")
    deleted = [line["key"] for line in audit(base) if line["deleted"]]
    assert len(deleted) == len(set(deleted)), "a delete recorded twice"
    for key, body in objects.items():
        if key in left:
            assert key not in deleted, key
        else:
            assert placed.get(key[len(PREFIX) :]) == body, key
            assert key in deleted, key


def test_a_run_in_two_lanes_is_one_run(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    objects = _objects(400)
    fill(s3, objects)

    result = run_cli([*drain_args(tmp_path, "--lanes", "2", "-v")], cli_env(s3_url))

    assert result.returncode == 0, result.stderr
    assert bucket_keys(s3) == set()
    assert local_tree(tmp_path / "raw") == {k[len(PREFIX) :]: v for k, v in objects.items()}
    lines = audit(tmp_path)
    assert sorted(line["key"] for line in lines) == sorted(objects)
    assert all(line["deleted"] for line in lines)
    assert len({line["run"] for line in lines}) == 1, "one run, whatever the lanes"
    # The lanes' per-object lines reach the run's stderr, each whole.
    shown = [line for line in result.stderr.splitlines() if line.startswith("downloaded ")]
    assert len(shown) == len(objects), result.stderr[-2000:]
    # One summary, counting both lanes, and both lanes' requests.
    assert "400" in result.stdout and "downloaded" in result.stdout, result.stdout
    assert "GetObject 400" in result.stdout, result.stdout
    with sqlite3.connect(tmp_path / ".s3drain" / "state.db") as db:
        runs = db.execute("SELECT id, exit_code FROM runs").fetchall()
        rows = db.execute("SELECT run_id, delete_state FROM deliveries").fetchall()
    assert runs == [(runs[0][0], 0)], "one row for the run, ended with its exit code"
    assert rows and {row for row in rows} == {(runs[0][0], "deleted")}
    assert len(rows) == len(objects)


def test_json_summary_of_a_run_in_lanes(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    objects = _objects(120)
    fill(s3, objects)
    result = run_cli([*drain_args(tmp_path, "--lanes", "3", "--json")], cli_env(s3_url))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 0 and summary["objects"]["downloaded"] == 120, summary
    assert summary["deleted"] == 120 and summary["left_in_s3"] == 0, summary
    # Three lanes list the prefix once each (--lanes given: no look at the first page first).
    assert summary["requests"]["by_operation"]["ListObjectsV2"] == 3, summary["requests"]
    assert summary["requests"]["by_operation"]["GetObject"] == 120, summary["requests"]


def _interrupt(
    base: Path,
    url: str,
    s3: S3Client,
    objects: Mapping[str, bytes],
    act: Callable[[subprocess.Popen[str], list[int]], None],
) -> tuple[subprocess.Popen[str], list[int], str, str]:
    """A run in two lanes, slowed by the proxy; `act` once downloads are under way."""
    fill(s3, objects)
    with FaultProxy(url, latency=0.05) as slow:
        run = _start(base, slow.url, "--workers", "4")
        _wait_for(lambda: len(_lanes_of(run.pid)) == 2, 30, "two lanes")
        lanes = _lanes_of(run.pid)
        _wait_for(lambda: _placed(base) >= 20, 60, "downloads under way")
        act(run, lanes)
        out, err = run.communicate(timeout=60)
    return run, lanes, out, err


def _next_run_finishes(base: Path, url: str, s3: S3Client, objects: Mapping[str, bytes]) -> None:
    rerun = run_cli(drain_args(base), cli_env(url))
    assert rerun.returncode == 0, rerun.stderr
    assert bucket_keys(s3) == set()
    _assert_all_accounted(base, s3, objects)


def test_a_run_killed_with_minus_9_takes_its_lanes_along(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    objects = _objects(600)
    _, lanes, _, _ = _interrupt(tmp_path, s3_url, s3, objects, lambda run, _: run.kill())
    _wait_for(lambda: not _any_lane_alive(lanes), 5, "the lanes to die with the run")
    # The lock went with them: the next run takes it and finishes everything.
    _next_run_finishes(tmp_path, s3_url, s3, objects)


def test_ctrl_c_stops_every_lane_and_the_next_run_finishes(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    objects = _objects(600)
    run, lanes, out, err = _interrupt(
        tmp_path, s3_url, s3, objects, lambda run, _: run.send_signal(signal.SIGINT)
    )
    assert run.returncode == 130, err
    assert "interrupted" in out, out
    assert not _any_lane_alive(lanes)
    assert bucket_keys(s3), "the run should have stopped before the end"
    assert not [name for name in local_tree(tmp_path / "raw") if ".s3drain-" in name]
    _assert_all_accounted(tmp_path, s3, objects)
    _next_run_finishes(tmp_path, s3_url, s3, objects)


def test_a_lane_that_dies_stops_the_run_and_the_next_run_finishes(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    objects = _objects(600)
    run, lanes, out, err = _interrupt(
        tmp_path, s3_url, s3, objects, lambda _, lanes: os.kill(lanes[0], signal.SIGKILL)
    )
    assert run.returncode == 5, err
    assert "ended without its figures (signal 9)" in err + out, err
    assert "Traceback" not in err
    assert not _any_lane_alive(lanes), "the other lane stopped too"
    _next_run_finishes(tmp_path, s3_url, s3, objects)


def test_a_full_disk_in_the_lanes_ends_the_run_with_exit_5(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    """The lanes inherit the run's file-size limit: their object files fail to grow, each
    lane stops, and the run ends as any run on a full disk does."""
    objects = {**_objects(200), **{f"{PREFIX}big/{n}.bin": os.urandom(300_000) for n in range(6)}}
    fill(s3, objects)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    result = subprocess.run(
        [sys.executable, "-m", "s3drain", *drain_args(tmp_path, "--lanes", "2")],
        env=cli_env(s3_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        check=False,
    )
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert bucket_keys(s3) >= {k for k in objects if "/big/" in k}
    _assert_all_accounted(tmp_path, s3, objects)


@pytest.mark.parametrize("flag", [["--max-objects", "5"], ["--shard", "0/2"]])
def test_lanes_and_a_limit_are_refused_before_anything_changes(
    tmp_path: Path, s3_url: str, s3: S3Client, flag: list[str]
) -> None:
    fill(s3, _objects(3))
    result = run_cli(drain_args(tmp_path, "--lanes", "2", *flag), cli_env(s3_url))
    assert result.returncode == 2, result.stderr
    assert "cannot be combined" in result.stderr and "Traceback" not in result.stderr
    assert not tmp_path.joinpath("raw").exists()
    assert len(bucket_keys(s3)) == 3
