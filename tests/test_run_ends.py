"""How a run ends, with the real command line (`python -m s3drain` in a subprocess) against
moto's HTTP server: output that cannot kill or falsify it (a closed pipe, stderr on a full
disk), an endpoint that dies mid-run (the breaker: exit 5) or blips for 3 s (ridden out), a
bug in any thread (exit 70 and one line naming the crash log), and a stop that cannot end
(the watchdog). Each time: the exit code tells the truth, nothing is lost, no traceback is
printed, and the next run finishes the job.

The figures this machine measures (breaker exit, outage run, watchdog exit) are printed:
`pytest -s tests/test_run_ends.py | grep measured`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from s3drain.drain import progress, source, worker
from s3drain.drain.deleter import Deleter
from s3drain.output import SafeStream
from s3drain.s3.client import S3Client
from s3drain.s3.listing import list_pages
from tests.support.drainkit import bucket_keys, drain_settings, ledger_rows, local_tree
from tests.support.proxy import FaultProxy, RequestInfo
from tests.test_cli_e2e import PREFIX, ROOT, audit, cli_env, drain_args, fill, run_cli

# -- what every test here checks --------------------------------------------------------------


def objects_of(count: int, size: int = 2000) -> dict[str, bytes]:
    return {f"{PREFIX}d{i % 3}/f{i:03d}.csv": os.urandom(size + i) for i in range(count)}


def assert_nothing_lost(base: Path, s3: S3Client, objects: Mapping[str, bytes]) -> set[str]:
    """Every object is still in S3, or its exact bytes are local and a line of the audit log
    says it was deleted (or the ledger owes that line to the next run). No line says deleted
    for an object still in S3. Returns the keys left in S3."""
    left = bucket_keys(s3)
    deleted = {line["key"] for line in audit(base) if line["deleted"]}
    owed = {row["key"] for row in ledger_rows(drain_settings(base), "audited = 0")}
    tree = local_tree(base / "raw")
    for key, data in objects.items():
        if key in left:
            assert key not in deleted, f"{key}: a line says deleted, it is in S3"
            continue
        assert tree.get(key[len(PREFIX) :]) == data, f"{key}: lost (gone, bytes not local)"
        assert key in deleted or key in owed, f"{key}: deleted, and no line says so"
    return left


def assert_finished(base: Path, s3: S3Client, objects: Mapping[str, bytes], run: Any) -> None:
    """The run after a disturbed one: exit 0, bucket empty, every byte local, and over all runs
    one line per object saying it was deleted."""
    assert run.returncode == 0, run.stdout + run.stderr
    assert bucket_keys(s3) == set()
    assert local_tree(base / "raw") == {k[len(PREFIX) :]: v for k, v in objects.items()}
    deleted = sorted(line["key"] for line in audit(base) if line["deleted"])
    assert deleted == sorted(objects), "each object's delete recorded exactly once"


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text[-3000:]


# -- output cannot kill or falsify a run -------------------------------------------------------

# A shell pipeline whose reader goes away: s3drain's own exit status is what counts.
PIPELINES = {
    # The usual one: the summary into head. It fits the pipe in one write, so the pipe does
    # not break here; the two below are the ones that break it.
    "stdout | head -1": "{cmd} 2>{err} | head -1 >{first}",
    # The reader is gone before the summary is written: it fails at the end, and at exit.
    "stdout | head -n 0": "{cmd} 2>{err} | head -n 0",
    # A line per object into a pipe whose reader left after the first: EPIPE mid-run.
    "stderr+stdout | head -1": "{cmd} 2>&1 | head -1 >{first}",
}


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_a_closed_pipe_neither_ends_nor_falsifies_the_run(
    tmp_path: Path, s3_url: str, s3: S3Client, pipeline: str
) -> None:
    objects = objects_of(300, 200)
    fill(s3, objects)
    base = tmp_path / "base"
    cmd = shlex.join([sys.executable, "-m", "s3drain", *drain_args(base), "-v"])
    err, first = tmp_path / "stderr.txt", tmp_path / "first.txt"
    line = PIPELINES[pipeline].format(cmd=cmd, err=err, first=first)
    script = f"set -o pipefail; {line}; echo ${{PIPESTATUS[0]}} >{tmp_path / 'status'}"

    subprocess.run(["bash", "-c", script], env=cli_env(s3_url), cwd=ROOT, timeout=300, check=False)

    assert (tmp_path / "status").read_text().strip() == "0"
    assert_finished(base, s3, objects, subprocess.CompletedProcess([], 0, "", ""))
    assert len(audit(base)) == len(objects)
    if err.exists():
        assert_no_traceback(err.read_text())
    if first.exists():
        assert first.read_text().count("\n") == 1


@contextlib.contextmanager
def full_tmpfs(mountpoint: Path, room: int) -> Iterator[Path]:
    """A 1 MiB tmpfs filled up to its last `room` bytes (root, and permission to mount)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full file system needs root to mount a 1 MiB tmpfs; not root here")
    mountpoint.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a 1 MiB tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        filler = mountpoint / "filler"
        with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - room))
        probe = mountpoint / "probe"
        with pytest.raises(OSError) as full:
            probe.write_bytes(b"x" * (room + 64 * 1024))
        assert full.value.errno == errno.ENOSPC
        probe.unlink()
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.mark.parametrize("streams", ["stderr", "stderr and stdout"])
def test_output_to_a_full_disk_neither_ends_nor_falsifies_the_run(
    tmp_path: Path, s3_url: str, s3: S3Client, streams: str
) -> None:
    objects = objects_of(300, 200)
    fill(s3, objects)
    base = tmp_path / "base"
    full = full_tmpfs(tmp_path / "full", room=8 * 1024)
    with full as disk, (disk / "err.txt").open("w") as err_file:
        out_file = (disk / "out.txt").open("w") if "stdout" in streams else None
        try:
            run = subprocess.run(
                [sys.executable, "-m", "s3drain", *drain_args(base), "-v"],
                env=cli_env(s3_url),
                cwd=ROOT,
                stdout=out_file or subprocess.PIPE,
                stderr=err_file,
                text=True,
                timeout=300,
                check=False,
            )
        finally:
            if out_file is not None:
                out_file.close()
        written = (disk / "err.txt").read_text()
        printed = run.stdout or (disk / "out.txt").read_text()

    assert run.returncode == 0, written[-2000:]
    assert_finished(base, s3, objects, run)
    assert len(audit(base)) == len(objects)
    assert_no_traceback(written, printed)
    # The stream filled the disk part way: some per-object lines made it, not all.
    assert 0 < written.count("\n") < len(objects), len(written)
    if out_file is None:
        assert "result: ok (exit 0)" in printed


# -- the breaker: an endpoint that dies, an endpoint that blips --------------------------------

BREAKER_BOUND = 30.0  # seconds from the endpoint's death to the run's exit: 10 s window + retries


def _measured(what: str, seconds: float) -> None:
    print(f"\nmeasured: {what}: {seconds:.1f} s")


@pytest.mark.parametrize("death", ["resets every connection", "refuses connections"])
def test_an_endpoint_that_dies_mid_run_ends_it_with_exit_5(
    tmp_path: Path, s3_url: str, s3: S3Client, death: str
) -> None:
    objects = objects_of(200)
    fill(s3, objects)
    base = tmp_path / "base"
    died: list[float] = []
    with FaultProxy(s3_url) as proxy:
        gets = itertools.count(1)

        def die_at_the_40th_get(info: RequestInfo) -> None:
            if info.op != "GetObject" or next(gets) != 40:
                return
            died.append(time.monotonic())
            if death.startswith("resets"):
                proxy.configure(fault_rate=1.0, fault_kinds=("reset_before",))
            else:
                threading.Thread(target=proxy.stop).start()

        proxy.before_forward = die_at_the_40th_get
        run = run_cli([*drain_args(base), "--workers", "4"], cli_env(proxy.url))
        ended = time.monotonic()

    assert died, "the endpoint never died: the run took fewer than 40 GETs"
    seconds = ended - died[0]
    _measured(f"endpoint {death}: exit 5 after", seconds)
    assert run.returncode == 5, run.stdout + run.stderr
    assert seconds <= BREAKER_BOUND
    said = [
        line for line in (run.stdout + run.stderr).splitlines() if "S3 unreachable since" in line
    ]
    assert len(said) == 1, said
    assert_no_traceback(run.stdout, run.stderr)
    assert assert_nothing_lost(base, s3, objects), "the run should have stopped before the end"

    again = run_cli(drain_args(base), cli_env(s3_url))
    assert_finished(base, s3, objects, again)


def test_a_three_second_outage_is_ridden_out(tmp_path: Path, s3_url: str, s3: S3Client) -> None:
    objects = objects_of(200)
    fill(s3, objects)
    with FaultProxy(s3_url) as proxy:
        started = time.monotonic()
        undisturbed = run_cli(
            [*drain_args(tmp_path / "before"), "--workers", "4"], cli_env(proxy.url)
        )
        baseline = time.monotonic() - started
        assert undisturbed.returncode == 0, undisturbed.stderr
        fill(s3, objects)
        gets = itertools.count(1)
        outage: list[float] = []

        def end_outage() -> None:
            proxy.configure(fault_rate=0.0)
            outage.append(time.monotonic())

        def three_seconds_from_the_40th_get(info: RequestInfo) -> None:
            if info.op == "GetObject" and next(gets) == 40:
                proxy.configure(fault_rate=1.0, fault_kinds=("reset_before",))
                outage.append(time.monotonic())
                threading.Timer(3.0, end_outage).start()

        proxy.before_forward = three_seconds_from_the_40th_get
        base = tmp_path / "base"
        started = time.monotonic()
        run = run_cli([*drain_args(base), "--workers", "4", "--json"], cli_env(proxy.url))
        seconds = time.monotonic() - started
        resets = proxy.fault_counts().get("reset_before", 0)

    _measured("200 objects, undisturbed", baseline)
    _measured(f"200 objects through a 3 s outage ({resets} connections reset)", seconds)
    assert len(outage) == 2 and outage[1] - outage[0] >= 3.0
    assert resets > 0
    assert run.returncode == 0, run.stdout + run.stderr
    assert_finished(base, s3, objects, run)


# -- the watchdog: a stop that cannot finish still ends the run --------------------------------


def _stop_while_gets_stall(
    base: Path, s3_url: str, objects: Mapping[str, bytes], *extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """SIGINT once two GETs are stalled (the proxy holds them 300 s; the read timeout is 60 s)."""
    with FaultProxy(
        s3_url,
        fault_rate=1.0,
        fault_kinds=("stall",),
        fault_ops=frozenset({"GetObject"}),
        stall_seconds=300.0,
    ) as proxy:
        run = subprocess.Popen(
            [sys.executable, "-m", "s3drain", *drain_args(base), "--workers", "2", *extra],
            env=cli_env(proxy.url),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while proxy.fault_counts().get("stall", 0) < 2:
            assert time.monotonic() < deadline and run.poll() is None, "no GET was stalled"
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        out, err = run.communicate(timeout=120)
        seconds = time.monotonic() - stopped
    return subprocess.CompletedProcess(run.args, run.returncode, out, err), seconds


@pytest.mark.parametrize("processes", ["0", "2"])
def test_a_stop_cuts_stalled_small_gets_at_once(
    tmp_path: Path, s3_url: str, s3: S3Client, processes: str
) -> None:
    """Small objects are fetched by direct GETs, in the run's own threads or in fetch
    processes; either cuts a GET still waiting for its answer when the run stops: exit 130 at
    once, not at the read timeout or the watchdog."""
    objects = objects_of(20)
    fill(s3, objects)
    base = tmp_path / "base"
    run, seconds = _stop_while_gets_stall(base, s3_url, objects, "--processes", processes)
    _measured("a stop with every small GET stalled: exit after", seconds)
    assert run.returncode == 130, run.stderr
    assert seconds < 10.0
    assert_no_traceback(run.stdout, run.stderr)
    assert assert_nothing_lost(base, s3, objects)
    again = run_cli(drain_args(base), cli_env(s3_url))
    assert_finished(base, s3, objects, again)


def test_a_stop_that_cannot_finish_ends_the_run_within_the_grace(
    tmp_path: Path, s3_url: str, s3: S3Client
) -> None:
    """SIGINT while the GETs of two large objects (streamed by the run's own threads through
    botocore, which nothing can cut) are stalled: the watchdog ends the run 30 s after the
    stop, exit 130, one line; the next run finishes."""
    objects = {f"{PREFIX}big{i}.bin": os.urandom(17 * 1024 * 1024) for i in range(2)}
    fill(s3, objects)
    base = tmp_path / "base"
    run, seconds = _stop_while_gets_stall(base, s3_url, objects)
    _measured("a stop with every large GET stalled: exit after", seconds)
    assert run.returncode == 130, run.stderr
    assert 25.0 <= seconds <= 45.0
    assert "did not end within 30 s" in run.stderr
    assert_no_traceback(run.stdout, run.stderr)
    assert assert_nothing_lost(base, s3, objects)

    again = run_cli(drain_args(base), cli_env(s3_url))
    assert_finished(base, s3, objects, again)


# -- exit 70: a bug in any thread ---------------------------------------------------------------

# The child: a bug put into one thread of the run (`inject_bug`), then the command line itself.
LAUNCH = (
    "import sys\n"
    "from tests.test_run_ends import inject_bug\n"
    "inject_bug(sys.argv[1])\n"
    "from s3drain.cli.main import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def inject_bug(where: str) -> None:
    """In the child process: a RuntimeError (what a bug raises) in the worker handling one
    key, in the deleter once S3 has answered a batch (half of it recorded), in the progress
    line, or in the listing after two pages."""

    def bug(what: str) -> RuntimeError:
        return RuntimeError(f"a bug in {what} (injected)")

    if where == "worker":
        real_process = worker._process

        def process(ctx: Any, record: Any, delivered: Any, rows: Any) -> None:
            if record.key.endswith("/f007.csv"):
                raise bug("the worker")
            real_process(ctx, record, delivered, rows)

        setattr(worker, "_process", process)  # noqa: B010
    elif where == "deleter":
        real_record_all = Deleter._record_all
        fired = threading.Event()

        def record_all(self: Deleter, outcomes: Sequence[Any]) -> None:
            if fired.is_set() or not any(o.deleted for o in outcomes):
                real_record_all(self, outcomes)
                return
            fired.set()
            real_record_all(self, outcomes[: len(outcomes) // 2])
            raise bug("the deleter")

        setattr(Deleter, "_record_all", record_all)  # noqa: B010
    elif where == "progress line":
        setattr(SafeStream, "isatty", lambda self: True)  # noqa: B010 - the line is drawn
        setattr(progress, "REDRAW_SECONDS", 0.01)  # noqa: B010

        def text(figures: Any) -> str:
            raise bug("the progress line")

        setattr(progress, "progress_text", text)  # noqa: B010
    elif where == "listing":

        def pages(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for number, page in enumerate(list_pages(*args, page_size=10, **kwargs)):
                if number == 2:
                    raise bug("the listing")
                yield page

        setattr(source, "list_pages", pages)  # noqa: B010
    else:
        raise ValueError(where)


@pytest.mark.parametrize("where", ["worker", "deleter", "progress line", "listing"])
def test_a_bug_in_any_thread_is_exit_70_with_one_line_naming_the_crash_log(
    tmp_path: Path, s3_url: str, s3: S3Client, where: str
) -> None:
    objects = objects_of(60)
    fill(s3, objects)
    base = tmp_path / "base"

    run = subprocess.run(
        [sys.executable, "-c", LAUNCH, where, *drain_args(base), "--workers", "2"],
        env=cli_env(s3_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 70, run.stdout + run.stderr
    lines = run.stderr.replace("\r\x1b[K", "").splitlines()
    errors = [line for line in lines if line.startswith("s3drain: error:")]
    assert len(errors) == 1, run.stderr
    assert f"internal error in the {where}" in errors[0] or where == "worker", errors[0]
    named = re.search(r"the traceback is in (\S+\.log)", errors[0])
    assert named is not None, errors[0]
    log = Path(named.group(1))
    assert log.parent == base / ".s3drain"
    trace = log.read_text()
    assert "Traceback" in trace and f"RuntimeError: a bug in the {where} (injected)" in trace
    assert_no_traceback(run.stdout, run.stderr)
    left = assert_nothing_lost(base, s3, objects)
    if where == "listing":
        assert left, "keys past the second page were never listed: they must stay in S3"

    again = run_cli(drain_args(base), cli_env(s3_url))
    assert_finished(base, s3, objects, again)
