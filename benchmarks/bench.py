"""The scenarios on one server: its ceiling, then each contender, each run checked.

For each scenario the objects are made once; then for the server ceiling and for each
contender (each run): the server is emptied (or restarted for big objects), the bucket is
filled identically, the contender runs as a child process against the loopback endpoint
(through the latency proxy or a link relay where the scenario says so), and the result is
verified: every object on disk with its bytes, nothing else there, the prefix empty.

Repeated runs go in rounds, one run of each contender per round, not one contender's runs back
to back: this virtual machine has spells of a few seconds in which writing into the page cache
costs several times its usual CPU (benchmarks/README.md, "CPU per GiB"), and a spell that
lands on one contender's consecutive runs would move its median and no one else's.

Each run starts with nothing dirty in the page cache (a sync after the fill), and ends with a
timed sync: what the contender left for the kernel to write is its time to reach the disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from benchmarks import contenders as tools
from benchmarks import dataset
from benchmarks.ceiling import CeilingError, measure
from benchmarks.child import ChildResult, LauncherError, run_child
from benchmarks.config import BenchConfig
from benchmarks.contenders import Contender, RunContext
from benchmarks.dataset import ObjectSpec
from benchmarks.results import (
    CEILING,
    CEILING_NAME,
    FAILED,
    NOT_INSTALLED,
    OK,
    SKIPPED,
    TIMEOUT,
    WRONG,
    Row,
    aggregate,
    request_counts,
)
from benchmarks.s3 import Target, ensure_bucket, fill, make_client
from benchmarks.scenarios import MIB, Scenario
from benchmarks.servers import Backend, Route, routable
from benchmarks.verify import verify
from benchmarks.watch import watch_rows

# moto keeps big objects' memory after a reset: above this, each run gets a new server (and
# SeaweedFS a new bucket, which drops its volumes).
RESTART_BYTES = 256 * MIB
_STDERR_TAIL = 300
# Environment a contender must not inherit: other endpoints, credentials, profiles, proxies,
# s3drain's own settings (it reads BUCKET_NAME, PATH_TO_SEARCH, ... from the environment).
_FOREIGN_PREFIXES = ("AWS_", "RCLONE_", "S3DRAIN_", "S3_")
_FOREIGN_NAMES = frozenset(
    {"BUCKET_NAME", "PATH_TO_SEARCH", "LOCAL_BASE_PATH", "RAW_DIR", "PROCESSED_DIR"}
    | {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
)
# The scaling scenario: the server on core 0, each of these contenders on core 1 and then on
# cores 0-1 (s3drain, and its two peers for reference).
SERVER_CORE = "0"
SCALING_CPUS = ("1", "0-1")
SCALING_CONTENDERS = ("s3drain", "rclone", "s5cmd")

# A server of the same kind pinned to the given cores, for the scaling scenario.
PinnedServer = Callable[[str], AbstractContextManager[Backend]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ServerBench:
    """The scenarios of one server: ``run()`` gives their rows."""

    def __init__(
        self,
        config: BenchConfig,
        backend: Backend,
        dest_root: Path,
        path: str,
        pinned_server: PinnedServer | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.dest_root = dest_root
        self.config_dir = config.workdir / "config"
        self.path = path
        self.located = {c.name: tools.locate(c, path) for c in config.contenders}
        self.pinned_server = pinned_server
        self.cpus: str | None = None  # where the contenders run; None: anywhere

    def run(self, scenarios: Sequence[Scenario]) -> list[Row]:
        write_tool_configs(self.config_dir, self.backend.target.region)
        rows: list[Row] = []
        for scenario in scenarios:
            if scenario.scaling:
                rows += self.scaling(scenario)
            elif scenario.trickle is not None:
                rows += watch_rows(self, scenario)
            else:
                rows += self.scenario(scenario)
        return rows

    def log(self, scenario: Scenario, message: str) -> None:
        log(f"[{scenario.name} on {self.backend.name}] {message}")

    def scenario(self, scenario: Scenario) -> list[Row]:
        prefix = f"bench/{scenario.name}/"
        if not routable(self.backend.target.endpoint_url, scenario.latency, scenario.link):
            note = "the latency proxy and the link relay need a plain HTTP endpoint"
            return [self.row(scenario, c.name, SKIPPED, note=note) for c in self.config.contenders]
        with self.objects(scenario, prefix) as objects:
            rows = [self.ceiling(scenario, prefix, objects)] if self.config.with_ceiling else []
            rows += self.contenders(scenario, self.config.contenders, prefix, objects)
        return rows

    @contextlib.contextmanager
    def objects(self, scenario: Scenario, prefix: str) -> Iterator[tuple[ObjectSpec, ...]]:
        data_dir = self.config.workdir / "data" / scenario.name
        self.log(scenario, f"making {scenario.title}")
        try:
            yield dataset.build(scenario, prefix, data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)

    def scaling(self, scenario: Scenario) -> list[Row]:
        """The server pinned to core 0; each contender on core 1, then on cores 0-1."""
        wanted = [c for c in self.config.contenders if c.name in SCALING_CONTENDERS]
        if (os.cpu_count() or 1) < 2 or self.pinned_server is None:
            note = "needs two cores and a server the bench starts"
            return [self.row(scenario, c.name, SKIPPED, note=note) for c in wanted]
        prefix = f"bench/{scenario.name}/"
        with (
            self.objects(scenario, prefix) as objects,
            self.pinned_server(SERVER_CORE) as pinned,
        ):
            bench = ServerBench(self.config, pinned, self.dest_root, self.path)
            rows = []
            if self.config.with_ceiling:
                # The probes' threads inherit the runner's pinning: the client on core 1.
                with _pinned_self({int(SCALING_CPUS[0])}):
                    rows.append(bench.ceiling(scenario, prefix, objects))
            for cpus in SCALING_CPUS:
                bench.cpus = cpus
                rows += bench.contenders(scenario, wanted, prefix, objects)
        return rows

    def row(self, scenario: Scenario, contender: str, status: str, **figures: Any) -> Row:
        return Row(scenario, contender, status, server=self.backend.name, cpus=self.cpus, **figures)

    def prepare(self, scenario: Scenario, prefix: str, objects: Sequence[ObjectSpec]) -> Target:
        """An emptied server holding exactly ``objects``."""
        self.backend.fresh(prefix, restart=scenario.total_bytes >= RESTART_BYTES)
        target = self.backend.target
        client = make_client(target)
        try:
            ensure_bucket(client, target.bucket)
            threads = 16 if scenario.small_objects else min(4, scenario.count)
            fill(client, target.bucket, objects, threads)
        finally:
            client.close()
        return target

    def ceiling(self, scenario: Scenario, prefix: str, objects: Sequence[ObjectSpec]) -> Row:
        self.log(scenario, "server ceiling")
        target = self.prepare(scenario, prefix, objects)
        with (
            tempfile.TemporaryDirectory(dir=self.config.workdir) as scratch,
            Route(self.backend, scenario.latency, Path(scratch), scenario.link) as route,
        ):
            client = make_client(target, route.url, pool=max(self.config.ceiling_levels))
            cpu_before = self.backend.cpu_seconds()
            try:
                best = measure(client, target.bucket, objects, self.config.ceiling_levels)
            except CeilingError as exc:
                self.log(scenario, f"server ceiling: {exc}")
                return self.row(scenario, CEILING_NAME, FAILED, note=str(exc))
            finally:
                client.close()
            server_cpu = _spent(cpu_before, self.backend.cpu_seconds())
            counts = route.close()
        note = best.summary()
        if route.relay_stats is not None:
            # Over all probes, not just the best: the relay's busiest share of a core is what
            # says whether it could have held the ceiling down.
            note += f"; {route.relay_stats.note}"
        self.log(scenario, f"server ceiling: {best.best.rate()} ({best.best.probe.label})")
        # Server CPU and requests over all probes, which is what the CPU per request needs.
        return self.row(
            scenario,
            CEILING_NAME,
            CEILING,
            seconds=best.best.seconds,
            note=note,
            requests=request_counts(counts),
            server_cpu_seconds=server_cpu,
        )

    def contenders(
        self,
        scenario: Scenario,
        wanted: Sequence[Contender],
        prefix: str,
        objects: Sequence[ObjectSpec],
    ) -> list[Row]:
        """One row per contender, in ``wanted``'s order; their runs taken in rounds."""
        installed = [c for c in wanted if self.located[c.name] is not None]
        trials: dict[str, list[Row]] = {c.name: [] for c in installed}
        rounds = self.config.runs(scenario)
        for number in range(1, rounds + 1):
            for contender in installed:
                if rounds > 1:
                    self.log(scenario, f"{contender.name}: run {number} of {rounds}")
                exe = self.located[contender.name]
                assert exe is not None
                trials[contender.name].append(self.trial(scenario, contender, exe, prefix, objects))
        rows = []
        for contender in wanted:
            if contender.name not in trials:
                self.log(scenario, f"{contender.name}: not installed")
                rows.append(
                    self.row(scenario, contender.name, NOT_INSTALLED, note="not found on PATH")
                )
                continue
            row = aggregate(trials[contender.name])
            speed = (
                f"{row.objects_per_second:,.1f} obj/s, {row.mib_per_second:,.1f} MiB/s"
                if row.timed
                else row.note
            )
            self.log(scenario, f"{row.label}: {row.status} {speed}")
            rows.append(row)
        return rows

    def trial(
        self,
        scenario: Scenario,
        contender: Contender,
        exe: str,
        prefix: str,
        objects: Sequence[ObjectSpec],
    ) -> Row:
        target = self.prepare(scenario, prefix, objects)
        # The fill's bytes (the server's files, on this machine's disk) and the last trial's
        # would otherwise be written back during this run, and slow whoever waits for the
        # disk (an fsync) by what others left.
        os.sync()
        runs = self.dest_root / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        trial_dir = Path(tempfile.mkdtemp(prefix=f"{scenario.name}-{contender.name}-", dir=runs))
        ctx = RunContext("", target, prefix, trial_dir / "base", trial_dir / "base" / "raw")
        ctx.dest.mkdir(parents=True)
        status = FAILED
        try:
            with Route(self.backend, scenario.latency, trial_dir, scenario.link) as route:
                ctx = dataclasses.replace(ctx, url=route.url)
                cpu_before = self.backend.cpu_seconds()
                result = run_child(
                    contender.command(exe, ctx),
                    env=contender.env(ctx, self.base_env(target)),
                    cwd=trial_dir,
                    stdout=trial_dir / "stdout.txt",
                    stderr=trial_dir / "stderr.txt",
                    timeout=self.config.timeout,
                    cpus=self.cpus,
                )
                server_cpu = _spent(cpu_before, self.backend.cpu_seconds())
                sync_seconds = timed_sync()
                counts = route.close()
            status, note = self.judge(ctx, objects, result, trial_dir)
            return self.row(
                scenario,
                contender.name,
                status,
                seconds=result.wall_seconds,
                cpu_seconds=result.cpu_seconds,
                peak_rss_bytes=result.peak_rss_bytes,
                peak_rss_sum_bytes=result.peak_rss_sum_bytes,
                processes=result.processes,
                requests=request_counts(counts),
                note=note,
                relay_cpu_seconds=route.relay_stats.cpu_seconds if route.relay_stats else None,
                server_cpu_seconds=server_cpu,
                sync_seconds=sync_seconds,
            )
        except LauncherError as exc:
            note = f"{exc} (logs in {trial_dir})"
            return self.row(scenario, contender.name, FAILED, note=note)
        finally:
            _clean_trial(trial_dir, keep_logs=status != OK)

    def judge(
        self, ctx: RunContext, objects: Sequence[ObjectSpec], result: ChildResult, logs: Path
    ) -> tuple[str, str]:
        """The run's status and, when it is not ok, what went wrong."""
        if result.timed_out:
            return TIMEOUT, f"killed after {self.config.timeout:.0f} s (logs in {logs})"
        if result.exit_code != 0:
            return FAILED, f"exit {result.exit_code}: {_tail(logs / 'stderr.txt')} (logs in {logs})"
        client = make_client(ctx.target)
        try:
            verdict = verify(client, ctx.target.bucket, ctx.prefix, objects, ctx.dest)
        finally:
            client.close()
        if not verdict.ok:
            return WRONG, f"{verdict.summary} (logs in {logs})"
        return OK, ""

    def base_env(self, target: Target) -> dict[str, str]:
        """The environment every contender starts from: the same keys, region and config."""
        env = {k: v for k, v in os.environ.items() if not _foreign(k)}
        env.update(target.credential_env())
        env.update(
            PATH=self.path,
            AWS_CONFIG_FILE=str(self.config_dir / "aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.config_dir / "aws-credentials"),
            RCLONE_CONFIG=str(self.config_dir / "rclone.conf"),
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        return env


def not_installed_rows(server: str, scenarios: Sequence[Scenario], note: str) -> list[Row]:
    """A server that is missing: one row per scenario says so, nothing crashes."""
    return [Row(s, CEILING_NAME, NOT_INSTALLED, server=server, note=note) for s in scenarios]


def timed_sync() -> float:
    """Seconds until everything written so far is on disk (sync(2) waits for it on Linux):
    after a contender exits, the writing it left to the kernel. s3drain fsyncs each file
    before its delete, so little is left; a tool that does not leaves all of it."""
    start = time.perf_counter()
    os.sync()
    return time.perf_counter() - start


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


@contextlib.contextmanager
def _pinned_self(cpus: set[int]) -> Iterator[None]:
    """Pin the calling thread (and the threads it starts) for the duration."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def _foreign(name: str) -> bool:
    return name.startswith(_FOREIGN_PREFIXES) or name.upper() in _FOREIGN_NAMES


def write_tool_configs(config_dir: Path, region: str) -> None:
    """Config files that only the bench's settings are in (not the user's ~/.aws, rclone.conf)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "aws-config").write_text(
        f"[default]\nregion = {region}\ns3 =\n    max_concurrent_requests = {tools.CONCURRENCY}\n"
    )
    (config_dir / "aws-credentials").write_text("")
    (config_dir / "rclone.conf").write_text("")


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "no stderr"
    return " ".join(text[-_STDERR_TAIL:].split()) or "no stderr"


def _clean_trial(trial_dir: Path, keep_logs: bool) -> None:
    """Remove the downloaded data; keep a failed run's stdout/stderr to look at."""
    if keep_logs:
        shutil.rmtree(trial_dir / "base", ignore_errors=True)
    else:
        shutil.rmtree(trial_dir, ignore_errors=True)
