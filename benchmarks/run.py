"""`make bench`: every contender drains the same prefix on the same server; one table.

    python -m benchmarks.run [--scenarios small,large,...] [--servers moto-aws-like,seaweedfs]
                             [--contenders s3drain,naive,aws,rclone,s5cmd]
                             [--endpoint-url URL] [--repeat N] [--smoke]

Server by server (moto, then SeaweedFS, each started by the bench), the scenarios that run
on it (benchmarks/scenarios.py says which): its ceiling, then each contender, each run
verified (benchmarks/bench.py). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import dataclasses
import datetime
import functools
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import moto

from benchmarks import contenders as tools
from benchmarks import machine, report, report_watch, seaweed
from benchmarks.bench import ServerBench, log, not_installed_rows
from benchmarks.config import (
    DEFAULT_BUCKET,
    DEST_LOOP,
    DEST_WORKDIR,
    FULL_LEVELS,
    FULL_TIMEOUT,
    SMOKE_LEVELS,
    SMOKE_TIMEOUT,
    BenchConfig,
)
from benchmarks.destfs import Destination, destination
from benchmarks.linkcheck import CHECK_BYTES, check_link
from benchmarks.memory import OwnMemory
from benchmarks.results import CEILING_NAME, Row
from benchmarks.s3 import target_from_environment
from benchmarks.scenarios import (
    DEFAULT_SERVERS,
    FULL,
    GIB,
    SCENARIO_NAMES,
    SERVER_NAMES,
    SMOKE,
    SMOKE_SCENARIO_NAMES,
    Scenario,
)
from benchmarks.seaweed import OwnSeaweed
from benchmarks.servers import Backend, ExternalServer, OwnMoto
from benchmarks.targets import checks_table, on_disk_checks, target_checks, watch_checks

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKDIR = REPO_ROOT / "benchmarks" / "work"
RESULTS = REPO_ROOT / "benchmarks" / "RESULTS.md"
SMOKE_RESULTS = WORKDIR / "RESULTS-smoke.md"
README = REPO_ROOT / "README.md"
SMOKE_LINK_CHECK_BYTES = 4 * 1024 * 1024
# Big objects' figures vary most between runs (page cache, writeback, two shared cores): by
# default they are the median of this many runs; the many-object scenarios average themselves.
BIG_REPEAT = 3
_COUNTING = {
    "moto-aws-like": "from moto's request log (no proxy in the path), and by the latency proxy "
    "in the latency scenario; SQS requests (the watch scenario) from the same log, by action",
    "seaweedfs": "from SeaweedFS's Prometheus metrics (`SeaweedFS_s3_request_total` by type; "
    "no proxy in the path); in the watch scenario SQS is a moto of its own, its requests "
    "counted from its log, by action",
    "memory": "by the server itself, by operation (`GET /_bench/counts`; no proxy in the path)",
    "external": "by a counting proxy (latency 0) in front of the endpoint, where it is plain HTTP",
}
_COUNTING["moto"] = _COUNTING["moto-aws-like"]


@dataclass(frozen=True)
class BenchResult:
    rows: tuple[Row, ...]
    info: report.RunInfo


class _Servers:
    """Each server of the run in turn, started and stopped by us (or the external one)."""

    def __init__(self, config: BenchConfig, path: str) -> None:
        self.config = config
        self.path = path
        self.weed = seaweed.locate(path)
        self.descriptions: dict[str, str] = {}
        self.versions: dict[str, str] = {}

    def names(self) -> tuple[str, ...]:
        return ("external",) if self.config.endpoint_url else self.config.servers

    @contextlib.contextmanager
    def started(self, name: str) -> Iterator[Backend | None]:
        """The running server, or None when it is not installed."""
        config = self.config
        backend: Backend
        if name == "external":
            assert config.endpoint_url is not None
            target = target_from_environment(config.endpoint_url, config.bucket, config.region)
            backend = ExternalServer(target)
        elif name == "seaweedfs":
            if self.weed is None:
                self.descriptions[name] = "SeaweedFS: not installed (`make bench-tools`)"
                yield None
                return
            self.versions["server: seaweedfs"] = seaweed.version(self.weed)
            backend = OwnSeaweed(self.weed, config.workdir / "seaweed", config.bucket).start()
        elif name == "memory":
            backend = OwnMemory(config.bucket).start()
        else:
            moto_server = OwnMoto(config.workdir, config.bucket, aws_like=name == "moto-aws-like")
            backend = moto_server.start()
            self.versions[f"server: {name}"] = f"moto {moto.__version__} (werkzeug, threaded)"
        self.descriptions[name] = backend.description
        try:
            yield backend
        finally:
            backend.close()

    @contextlib.contextmanager
    def pinned(self, name: str, cpus: str) -> Iterator[Backend]:
        """A server of its own of the kind ``name`` pinned to ``cpus`` (the scaling scenario)."""
        backend: Backend
        if name == "memory":
            backend = OwnMemory(self.config.bucket, cpus=cpus).start()
        else:
            assert self.weed is not None
            backend = OwnSeaweed(
                self.weed, self.config.workdir / "seaweed", self.config.bucket, cpus=cpus
            ).start()
        try:
            yield backend
        finally:
            backend.close()


def _ordered(rows: Sequence[Row], servers: Sequence[str]) -> list[Row]:
    """Scenario by scenario, then server by server: the table reads scenario by server."""
    scenario_order = {name: index for index, name in enumerate(SCENARIO_NAMES)}
    server_order = {name: index for index, name in enumerate(servers)}
    indexed = sorted(
        enumerate(rows),
        key=lambda item: (
            scenario_order.get(item[1].scenario.name, 99),
            server_order.get(item[1].server, 99),
            item[0],
        ),
    )
    return [row for _, row in indexed]


def run_bench(config: BenchConfig, command: str = "python -m benchmarks.run") -> BenchResult:
    config.workdir.mkdir(parents=True, exist_ok=True)
    _check_space(config.workdir, config.scenarios)
    path = tools.search_path(_environ_path())
    servers = _Servers(config, path)
    machine_info = machine.machine_info(config.workdir)  # before the load we add ourselves
    biggest = max((s.total_bytes for s in config.scenarios), default=0)
    rows: list[Row] = []
    with destination(config.workdir, config.dest == DEST_LOOP, biggest) as dest:
        if dest.fallback_note:
            log(f"note: {dest.fallback_note}")
        log(f"destinations on {dest.description}")
        versions: dict[str, str] = {}
        link_check = _check_links(config, servers.names(), config.link_check_bytes)
        for name in servers.names():
            scenarios = config.scenarios_on(name)
            if not scenarios:
                continue
            with servers.started(name) as backend:
                if backend is None:
                    log(f"{name}: not installed; its scenarios are skipped")
                    rows += not_installed_rows(name, scenarios, "weed not found: make bench-tools")
                    continue
                pinned = (
                    functools.partial(servers.pinned, name)
                    if name in ("seaweedfs", "memory")
                    else None
                )
                bench = ServerBench(config, backend, dest.root, path, pinned)
                if not versions:
                    versions = _versions(bench)
                rows += bench.run(scenarios)
    info = report.RunInfo(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=command,
        servers=servers.descriptions,
        counting={name: _COUNTING.get(name, "") for name in servers.descriptions},
        versions=versions | servers.versions,
        settings=_settings(config),
        machine=machine_info | {"load average when it ended": machine.load_average()},
        scenarios=config.scenarios,
        link_check=link_check,
        destination=_destination_text(dest),
    )
    return BenchResult(tuple(_ordered(rows, servers.names())), info)


def _versions(bench: ServerBench) -> dict[str, str]:
    env = bench.base_env(bench.backend.target)
    found = {
        c.name: tools.version(c, exe, env)
        for c in bench.config.contenders
        if (exe := bench.located[c.name]) is not None
    }
    return found | {c.name: "not installed" for c in bench.config.contenders if c.name not in found}


def _destination_text(dest: Destination) -> str:
    text = f"Every destination folder was on {dest.description}."
    if dest.fallback_note:
        text += f" Note: {dest.fallback_note}."
    return text + " benchmarks/README.md says why the bench mounts a journaled ext4 of its own."


def _environ_path() -> str:
    return os.environ.get("PATH", "")


def _check_space(workdir: Path, scenarios: Sequence[Scenario]) -> None:
    """Source files, the server's copy and the download of the biggest scenario, and slack."""
    needed = 3 * max((s.total_bytes for s in scenarios), default=0) + 1 * GIB
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise SystemExit(
            f"{workdir} has {free / GIB:.1f} GiB free; this bench needs {needed / GIB:.1f} GiB"
        )


def _check_links(config: BenchConfig, servers: Sequence[str], stream_bytes: int) -> str | None:
    """Measure each distinct link the run's scenarios use before trusting figures over it."""
    used = [s for name in servers for s in config.scenarios_on(name)]
    links = list(dict.fromkeys(s.link for s in used if s.link is not None))
    texts = []
    for link in links:
        log(f"checking the link: {link.title}")
        summary = check_link(link.delay, link.rate, stream_bytes).summary()
        log(summary)
        texts.append(summary)
    return "\n\n".join(texts) if texts else None


def _settings(config: BenchConfig) -> dict[str, str]:
    settings = {c.name: c.settings for c in config.contenders}
    levels = ", ".join(str(level) for level in config.ceiling_levels)
    settings[CEILING_NAME] = (
        f"fastest of probes at {levels} threads (`http.client`, presigned GET URLs, one kept "
        "connection per thread, bytes discarded); where a scenario has fewer objects than "
        "threads also equal ranges per object, and for objects over 8 MiB 16 threads of 8 MiB "
        "ranges; in the scaling scenario the probes run on core 1"
    )
    big = config.repeat if config.repeat_big is None else config.repeat_big
    runs = f"{config.repeat} run(s) each, the median reported"
    if big != config.repeat:
        runs = (
            f"{config.repeat} run(s) each in the scenarios of small objects, {big} in those of "
            "big objects, the median reported"
        )
    if any(scenario.trickle for scenario in config.scenarios):
        settings["s3drain watch"] = (
            "`python -m s3drain watch --bucket BUCKET --prefix PREFIX --local-base-path DIR "
            "--endpoint-url URL --addressing-style path --region REGION --queue-url QUEUE "
            "--sqs-endpoint-url SQS -q --json`, its defaults otherwise (see "
            "`s3drain watch --help`: a reconcile pass at start and every hour, 2 receivers, 20 s "
            "long polls); stopped by SIGTERM after the trickle. On the burst of events also "
            "`--once --reconcile 0` (its long polls are then 2 s). The plain drain is the "
            "s3drain contender's command"
        )
    settings["every contender"] = (
        "the same access keys and region in the environment, its own empty config files "
        "(AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, RCLONE_CONFIG), no proxies, a fresh "
        f"empty destination; {runs}; timeout {config.timeout:.0f} s"
    )
    return settings


# --- command line ----------------------------------------------------------------------------


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{what}: choose from {', '.join(known)}")
    return names


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument(
        "--scenarios",
        default=None,
        help=f"default: all ({','.join(SCENARIO_NAMES)}); with --smoke "
        f"{','.join(SMOKE_SCENARIO_NAMES)}",
    )
    parser.add_argument("--contenders", default=",".join(tools.ALL))
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help="our own servers, one after the other: moto-aws-like (moto honouring "
        "DeleteObjects' per-key ETag as AWS documents), moto (as released), seaweedfs "
        f"(default: {','.join(DEFAULT_SERVERS)})",
    )
    parser.add_argument("--endpoint-url", default=None, help="another server instead of ours")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET)
    parser.add_argument("--region", default=None)
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help=f"runs per contender, the median reported (default: 1, and {BIG_REPEAT} in the "
        "scenarios of big objects; 1 with --smoke)",
    )
    parser.add_argument(
        "--dest",
        choices=(DEST_LOOP, DEST_WORKDIR),
        default=DEST_LOOP,
        help="where contenders write: a journaled ext4 image mounted by the bench (default; "
        "needs root, else the work folder with a note), or the work folder's file system",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; writes to work/")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run")
    parser.add_argument(
        "--watch-seconds",
        type=float,
        default=None,
        help="how long the watch scenario's trickle of uploads lasts (default: "
        f"{FULL['watch'].trickle.seconds if FULL['watch'].trickle else 0:g} s, "
        f"{SMOKE['watch'].trickle.seconds if SMOKE['watch'].trickle else 0:g} with --smoke)",
    )
    parser.add_argument("--output", type=Path, default=None, help="where the markdown goes")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    args = parser.parse_args(argv)
    try:
        default = SMOKE_SCENARIO_NAMES if args.smoke else SCENARIO_NAMES
        args.scenario_names = _names(
            args.scenarios or ",".join(default), SCENARIO_NAMES, "--scenarios"
        )
        args.contender_names = _names(args.contenders, list(tools.ALL), "--contenders")
        args.server_names = _names(args.servers, SERVER_NAMES, "--servers")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.watch_seconds is not None and args.watch_seconds <= 0:
        parser.error("--watch-seconds must be more than 0")
    return args


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    sizes = SMOKE if args.smoke else FULL
    return BenchConfig(
        scenarios=tuple(
            _trickle_for(sizes[name], args.watch_seconds) for name in args.scenario_names
        ),
        contenders=tuple(tools.ALL[name] for name in args.contender_names),
        workdir=WORKDIR,
        endpoint_url=args.endpoint_url,
        servers=tuple(args.server_names),
        bucket=args.bucket,
        region=args.region,
        repeat=args.repeat or 1,
        repeat_big=args.repeat or (1 if args.smoke else BIG_REPEAT),
        timeout=args.timeout or (SMOKE_TIMEOUT if args.smoke else FULL_TIMEOUT),
        ceiling_levels=SMOKE_LEVELS if args.smoke else FULL_LEVELS,
        link_check_bytes=SMOKE_LINK_CHECK_BYTES if args.smoke else CHECK_BYTES,
        dest=args.dest,
    )


def _trickle_for(scenario: Scenario, seconds: float | None) -> Scenario:
    """The watch scenario with its trickle lasting ``seconds`` (at the same rate)."""
    if scenario.trickle is None or seconds is None:
        return scenario
    return dataclasses.replace(
        scenario, trickle=dataclasses.replace(scenario.trickle, seconds=seconds)
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds the with-blocks: the contender, the proxies and servers are stopped.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = _parse_args(argv)
    config = config_from_args(args)
    command = "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    _compile_s3drain()
    result = run_bench(config, command.strip())
    output = args.output or (SMOKE_RESULTS if args.smoke else RESULTS)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report.results_markdown(result.rows, result.info))
    complete = len(config.scenarios) == len(SCENARIO_NAMES) and set(DEFAULT_SERVERS) <= set(
        config.servers
    )
    if not (args.smoke or args.no_readme or args.output) and complete:
        block = report.readme_block(result.rows, result.info)
        if not report.replace_readme_block(README, block):
            log("README.md has no bench block markers; left alone")
    print(report.table(result.rows))
    scaling = report.scaling_table(result.rows)
    if scaling:
        print()
        print(scaling)
    watch = report_watch.watch_tables(result.rows)
    if watch:
        print()
        print(watch)
    print()
    print(checks_table(target_checks(result.rows)))
    on_disk = on_disk_checks(result.rows)
    if on_disk:
        print()
        print(checks_table(on_disk))
    if watch:
        print()
        print(checks_table(watch_checks(result.rows)))
    log(f"written to {output}")


def _compile_s3drain() -> None:
    """s3drain's bytecode, as an installed package has it: `make venv` installs it editable,
    and where PYTHONDONTWRITEBYTECODE is set (as on our machines) every run, and every fetch
    process, would compile its modules from source first (0.06-0.09 CPU-s a start)."""
    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "s3drain"), quiet=1)


if __name__ == "__main__":
    main()
